"""Inference: test-time augmentation, ensembles, probability maps in the input's frame.

* TTA: each transform of ``identity, hflip, vflip, rot90, rot270`` is applied to
  the input batch and **inverted exactly** on the predicted probabilities
  before they are averaged.
* Ensembles: the (optionally weighted) mean of probabilities over models —
  checkpoints of folds, snapshots, top-k, other architectures. Models are
  applied one after another to each batch, so only one batch of maps per
  model is alive at a time, whatever the number of images.
* :class:`Predictor` takes radiographs as float ``[0, 1]`` H×W arrays, applies a
  model's stored preprocessing (lung crop, resize, normalisation, from its
  ``best.json``) and returns probabilities in the input's own frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ptxseg.errors import PtxsegError

#: name → (forward, inverse) on ``B×C×H×W`` tensors
TTA_TRANSFORMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "identity": (lambda x: x, lambda y: y),
    "hflip": (lambda x: x.flip(-1), lambda y: y.flip(-1)),
    "vflip": (lambda x: x.flip(-2), lambda y: y.flip(-2)),
    "rot90": (lambda x: torch.rot90(x, 1, (-2, -1)), lambda y: torch.rot90(y, -1, (-2, -1))),
    "rot270": (lambda x: torch.rot90(x, -1, (-2, -1)), lambda y: torch.rot90(y, 1, (-2, -1))),
}


def check_tta(tta: Sequence[str]) -> list[str]:
    """The TTA list, validated (non-empty, known names, no repeats)."""
    names = list(tta) or ["identity"]
    unknown = [t for t in names if t not in TTA_TRANSFORMS]
    if unknown:
        raise PtxsegError("--tta", f"unknown transform {unknown[0]!r}; choose from {', '.join(TTA_TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise PtxsegError("--tta", f"repeated transform in {names}")
    return names


@torch.no_grad()
def tta_members(model: torch.nn.Module, x: torch.Tensor, tta: Sequence[str] = ("identity",)) -> torch.Tensor:
    """Probabilities of every TTA member, each mapped back to the input frame: ``T×B×1×H×W``."""
    outs = []
    for name in check_tta(tta):
        fwd, inv = TTA_TRANSFORMS[name]
        outs.append(inv(torch.sigmoid(model(fwd(x)).float())))
    return torch.stack(outs)


def tta_predict(model: torch.nn.Module, x: torch.Tensor, tta: Sequence[str] = ("identity",)) -> torch.Tensor:
    """Mean probability over the TTA members: ``B×1×H×W`` in ``[0, 1]``."""
    return tta_members(model, x, tta).mean(0)


class Predictor:
    """One model or an ensemble, with the preprocessing stored in its metadata.

    Args:
        sources: run directories, bundle directories or ``.safetensors`` files;
            all must share one input size, normalisation and crop.
        weights: ensemble weights (default equal).
        tta: TTA transforms (default: those stored with the first model).
        device: torch device.
    """

    def __init__(
        self,
        sources: Sequence[str | PathLike[str]],
        weights: Sequence[float] | None = None,
        tta: Sequence[str] | None = None,
        device: str = "cpu",
    ) -> None:
        from ptxseg.checkpoint import load_model

        if not sources:
            raise PtxsegError("model", "no model given")
        loaded = [load_model(s, device) for s in sources]
        self.models = [m for m, _ in loaded]
        self.metas = [meta for _, meta in loaded]
        self.meta = self.metas[0]
        for src, meta in zip(sources, self.metas, strict=True):
            if meta["input"] != self.meta["input"]:
                raise PtxsegError(src, f"input settings {meta['input']} differ from the ensemble's {self.meta['input']}")
        w = np.ones(len(self.models)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.models),) or (w < 0).any() or w.sum() <= 0:
            raise PtxsegError("--weights", f"need {len(self.models)} non-negative weights with a positive sum, got {list(w)}")
        self.weights = w / w.sum()
        self.tta = check_tta(tta if tta is not None else self.meta.get("tta", ["identity"]))
        self.device = torch.device(device)
        self.size = int(self.meta["input"]["size"])

    @property
    def operating_point(self) -> dict[str, Any]:
        return self.meta["operating_point"]

    def _crop_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        crop = self.meta["input"].get("crop")
        if not crop:
            return 0, shape[0], 0, shape[1]
        from ptxseg.config import CropConfig
        from ptxseg.train.data import crop_box

        return crop_box(shape, CropConfig(**crop))

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """An H×W ``[0, 1]`` image as the network input (size², normalised) and the crop box used."""
        from ptxseg.data.augment import normalize

        box = self._crop_box(image.shape)
        r0, r1, c0, c1 = box
        x = cv2.resize(image[r0:r1, c0:c1].astype(np.float32), (self.size, self.size), interpolation=cv2.INTER_AREA)
        inp = self.meta["input"]
        return normalize(x, inp.get("normalize", "minmax"), inp.get("mean", 0.5), inp.get("std", 0.5)), box

    @torch.no_grad()
    def predict_network(self, batch: np.ndarray) -> np.ndarray:
        """Ensemble × TTA mean probabilities at the network size: ``B×S×S`` float32 for a ``B×S×S`` input batch."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
        total = None
        for w, m in zip(self.weights, self.models, strict=True):
            p = tta_predict(m, x, self.tta)[:, 0].cpu().numpy() * w
            total = p if total is None else total + p  # one model's maps at a time
        return total.astype(np.float32)

    def to_frame(self, prob: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
        """A network-size probability map placed back into an image of ``shape`` (zero outside the crop)."""
        r0, r1, c0, c1 = box
        out = np.zeros(shape, np.float32)
        out[r0:r1, c0:c1] = cv2.resize(prob, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
        return out

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 4) -> list[np.ndarray]:
        """Probabilities (float32, in ``[0, 1]``) for each image, in its own frame."""
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            prepped = [self.preprocess(im) for im in chunk]
            probs = self.predict_network(np.stack([p for p, _ in prepped]))
            out += [self.to_frame(p, box, im.shape) for p, (_, box), im in zip(probs, prepped, chunk, strict=True)]
        return out


def save_probability_map(path: str | PathLike[str], prob: np.ndarray, dtype: str = "uint8") -> Path:
    """Store a probability map compressed (``.npz``): uint8 (1/255 steps) or float16."""
    from ptxseg.io.atomic import atomic_path

    if dtype == "uint8":
        data = np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)
    elif dtype == "float16":
        data = prob.astype(np.float16)
    else:
        raise PtxsegError("--dtype", f"must be uint8 or float16, got {dtype!r}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, prob=data)
    return path


def load_probability_map(path: str | PathLike[str]) -> np.ndarray:
    """A stored probability map as float32 in ``[0, 1]``."""
    with np.load(path, allow_pickle=False) as z:
        data = z["prob"]
    return data.astype(np.float32) / 255.0 if data.dtype == np.uint8 else data.astype(np.float32)


def predict_dataset(
    predictor: Predictor, dataset: str | PathLike[str], ids: Sequence[str], save_probs: str | PathLike[str] | None = None
):
    """Yield ``(probability, truth)`` at the dataset's stored size for each id of a canonical dataset.

    Truth is the stored mask (all zeros when the image has none). With
    ``save_probs`` each map is also written there as ``<id>.npz`` (uint8).
    """
    from ptxseg.io.images import read_image, read_mask

    root = Path(dataset)
    for image_id in ids:
        image = read_image(root / "images" / f"{image_id}.png")
        mask_path = root / "masks" / f"{image_id}.png"
        truth = read_mask(mask_path) if mask_path.is_file() else np.zeros(image.shape, np.uint8)
        prob = predictor.predict([image])[0]
        if save_probs is not None:
            save_probability_map(Path(save_probs) / f"{image_id}.npz", prob)
        yield prob, truth
