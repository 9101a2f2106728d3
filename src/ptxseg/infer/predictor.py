"""Inference: test-time augmentation, ensembles, probability maps in the input's frame.

* TTA (:mod:`ptxseg.infer.tta`): each transform of ``identity, hflip, vflip, rot90, rot270`` is applied to
  the input batch and **inverted exactly** on the predicted probabilities
  before they are averaged. A bundle's ONNX model runs in ONNX Runtime (:mod:`ptxseg.infer.onnx`).
* Ensembles: the (optionally weighted) mean of probabilities over models —
  checkpoints of folds, snapshots, top-k, other architectures. Models are
  applied one after another to each batch, so only one batch of maps per
  model is alive at a time, whatever the number of images.
* :class:`Predictor` takes radiographs as float ``[0, 1]`` H×W arrays, applies the
  model card's :class:`~ptxseg.data.preprocess.Preprocessing` (the same letterbox,
  crop, resize and normalisation as in training) and maps probabilities back onto
  the input's own pixel grid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptxseg import __version__
from ptxseg.artifacts.bundle import is_bundle, read_bundle
from ptxseg.artifacts.checkpoint import load_model, resolve_weights
from ptxseg.artifacts.ensemble import is_ensemble_file, read_ensemble
from ptxseg.artifacts.shipped import resolve_model
from ptxseg.data.preprocess import Frame, Preprocessing
from ptxseg.data.truth import read_truth
from ptxseg.errors import PtxsegError
from ptxseg.infer.onnx import OrtModel
from ptxseg.infer.tta import check_tta, tta_members_with_cls
from ptxseg.io.images import read_image
from ptxseg.io.names import check_name, under
from ptxseg.io.probability_maps import save_probability_map
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point


@dataclass
class Prediction:
    """An ensemble × TTA prediction of one image (or, from :meth:`Predictor.predict_network`, a batch).

    Attributes:
        prob: weighted mean probability over the members, float32 in ``[0, 1]``,
            H×W in the image's frame (``B×S×S`` for a network batch).
        variance: weighted pixel-wise variance of the members' probabilities,
            same shape (0 for a single member).
        cls_prob: mean probability of the classifier heads (over the members of
            the models that have one): a float (``B`` array for a batch), or
            None when no model has a head.
        member_scores: each member's image-level probability, ``M`` (``B×M``):
            its classifier head when it has one, else its maximum pixel
            probability. Members are ordered model by model, TTA within.
    """

    prob: np.ndarray
    variance: np.ndarray
    cls_prob: float | np.ndarray | None
    member_scores: np.ndarray

    @property
    def score(self) -> float | np.ndarray:
        """Image-level probability: the classifier head's when present, else the maximum pixel probability."""
        if self.cls_prob is not None:
            return self.cls_prob
        return self.prob.reshape(*self.prob.shape[:-2], -1).max(-1)

    def mask(self, op) -> np.ndarray:
        """The binary mask (bool, shape of ``prob``) at an :class:`~ptxseg.measure.operating_point.OperatingPoint`."""

        return apply_operating_point(self.prob, op, self.cls_prob)


class Predictor:
    """One model or an ensemble, with the preprocessing stored in its metadata.

    Two backends, one API: run directories and ``.safetensors`` files run in PyTorch; a bundle folder
    (``ptxseg export``, see :mod:`ptxseg.artifacts.bundle`) runs in ONNX Runtime, its files checked against their hashes.
    TTA and ensembles work on both; sessions and models are created once.

    Args:
        sources: run directories or ``.safetensors`` files, all with one preprocessing; or a single
            ensemble file (``.json``, see :mod:`ptxseg.artifacts.ensemble`), which brings its members, weights,
            TTA and operating point; or a single bundle folder, which brings the same.
        weights: ensemble weights (default equal, or the ensemble file's).
        tta: TTA transforms (default: those stored with the first model or the ensemble).
        device: torch device.
        mc_dropout: Monte-Carlo dropout passes per TTA member for models with dropout (0: off); the
            members then number models × TTA × passes, and their disagreement is the uncertainty.
        mc_seed: seed of the dropout samples (the same input gives the same prediction).
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice, one per core).
    """

    def __init__(
        self,
        sources: Sequence[str | PathLike[str]],
        weights: Sequence[float] | None = None,
        tta: Sequence[str] | None = None,
        device: str = "cpu",
        mc_dropout: int = 0,
        mc_seed: int = 0,
        threads: int | None = None,
    ) -> None:

        if mc_dropout < 0:
            raise PtxsegError("--mc-dropout", f"must be 0 (off) or a number of passes, got {mc_dropout}")
        self.mc_dropout, self.mc_seed = int(mc_dropout), int(mc_seed)
        if not sources:
            raise PtxsegError("model", "no model given")
        sources = [resolve_model(s) for s in sources]  # a shipped name (`default`) → its folder; a typo → "no such file"
        self.ensemble = None
        self.bundle = None
        self.backend = "pytorch"
        if any(is_bundle(s) for s in sources):
            if len(sources) != 1:
                raise PtxsegError(sources[0], "a bundle is used on its own, not with other models")
            folder = Path(sources[0])
            self.bundle, self.cards = read_bundle(folder)
            self.backend = f"onnxruntime {self.bundle.precision}"
            self.sources = [folder / m.onnx for m in self.bundle.members]
            self.weight_files = list(self.sources)
            self.models = [OrtModel(p, threads, device) for p in self.sources]
            weights = [m.weight for m in self.bundle.members] if weights is None else weights
            tta = self.bundle.tta if tta is None else tta
        elif any(is_ensemble_file(s) for s in sources):
            if len(sources) != 1:
                raise PtxsegError(sources[0], "an ensemble file is used on its own, not with other models")
            self.ensemble = read_ensemble(sources[0])
            sources = self.ensemble.members
            weights = self.ensemble.weights if weights is None else weights
            tta = self.ensemble.tta if tta is None else tta
        if self.bundle is None:
            self.sources = [Path(s) for s in sources]
            loaded = [load_model(s, device) for s in sources]
            self.models = [m for m, _ in loaded]
            self.cards = [card for _, card in loaded]
            self.weight_files = [resolve_weights(s) for s in self.sources]
        self.card = self.cards[0]
        for src, card in zip(self.sources, self.cards, strict=True):
            if card.preprocessing != self.card.preprocessing:
                ours, theirs = card.preprocessing.describe(), self.card.preprocessing.describe()
                raise PtxsegError(src, f"preprocessing ({ours}) differs from the ensemble's ({theirs})")
        try:
            w = np.ones(len(self.models)) if weights is None else np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise PtxsegError("--weights", f"ensemble weights must be numbers, got {weights!r}") from None
        if w.shape != (len(self.models),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise PtxsegError("--weights", f"need {len(self.models)} finite non-negative weights with a positive sum, got {list(w)}")
        self.weights = w / w.sum()
        self.tta = check_tta(tta if tta is not None else self.card.tta)
        self.device = torch.device(device)

    @property
    def preprocessing(self) -> Preprocessing:
        """The preprocessing contract every member was trained with."""
        return self.card.preprocessing

    @property
    def size(self) -> int:
        """The network input side."""
        return self.card.preprocessing.size

    @property
    def target(self) -> str:
        """What the model segments: ``pneumothorax`` or ``lungs``."""
        return self.card.target

    @property
    def operating_point(self) -> OperatingPoint:
        """The bundle's or the ensemble file's operating point, else the first model's."""
        if self.bundle is not None:
            return self.bundle.operating_point
        if self.ensemble is not None:
            return OperatingPoint.from_dict(self.ensemble.operating_point)
        return self.card.operating_point

    @property
    def version(self) -> str:
        """``ptxseg X / weights <first 12 hex of the SHA-256 of the weight files>`` (+ the ONNX Runtime precision):
        identifies the exact model(s) behind a prediction."""

        h = hashlib.sha256()
        for path in self.weight_files:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        kind = "" if self.bundle is None else f" / {self.backend}"
        return f"ptxseg {__version__} / weights {h.hexdigest()[:12]}{kind}"

    @property
    def tuning(self) -> dict[str, Any] | None:
        """How the operating point was tuned (``ptxseg tune``'s record), if it was."""
        return self.ensemble.tuning if self.ensemble is not None else self.card.tuning

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Frame]:
        """A decoded radiograph (H×W, ``[0, 1]``) as the network input (``size²``, normalised) and where it came from —
        through the model's :class:`~ptxseg.data.preprocess.Preprocessing`, exactly as in training."""
        return self.preprocessing.network_input(image)

    @torch.no_grad()
    def predict_network(self, batch: np.ndarray) -> Prediction:
        """Ensemble × TTA prediction at the network size for a ``B×S×S`` input batch (arrays ``B×S×S``, ``B``, ``B×M``).

        Streams over models: only one model's TTA maps are alive at a time,
        the mean and variance are accumulated as weighted sums of p and p².
        """
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
        s1 = s2 = None
        cls_sum, cls_w, scores = np.zeros(len(batch)), 0.0, []
        for w, m in zip(self.weights, self.models, strict=True):
            members, cls = self._members(m, x)
            n = len(members)  # TTA transforms (× Monte-Carlo passes)
            p = members[:, :, 0].cpu().numpy().astype(np.float64)  # n×B×S×S
            s1 = (w / n) * p.sum(0) + (0 if s1 is None else s1)
            s2 = (w / n) * (p * p).sum(0) + (0 if s2 is None else s2)
            if cls is not None:
                c = cls.cpu().numpy().astype(np.float64)  # T×B
                cls_sum, cls_w = cls_sum + w * c.mean(0), cls_w + w
                scores.append(c.T)
            else:
                scores.append(p.reshape(n, len(batch), -1).max(-1).T)
        cls_mean = (cls_sum / cls_w) if cls_w > 0 else None
        if not np.isfinite(s1).all() or (cls_mean is not None and not np.isfinite(cls_mean).all()):
            # a broken model (non-finite weights, a degenerate normalisation) must never read as "no pneumothorax"
            raise PtxsegError(
                ", ".join(map(str, self.sources)),
                "the model produced non-finite probabilities (NaN or infinity): the model or the input is broken",
                code="non_finite",
            )
        variance = np.clip(s2 - s1 * s1, 0, None)
        return Prediction(
            s1.astype(np.float32),
            variance.astype(np.float32),
            cls_mean,
            np.concatenate(scores, 1),
        )

    def _members(self, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """TTA members of one model; with Monte-Carlo dropout, ``mc_dropout`` stochastic passes of each (seeded)."""
        if not self.mc_dropout or not getattr(model, "has_dropout", False):
            return tta_members_with_cls(model, x, self.tta)
        probs, heads = [], []
        with torch.random.fork_rng(devices=[]), model.stochastic():
            torch.manual_seed(self.mc_seed)  # the same input gives the same samples
            for _ in range(self.mc_dropout):
                p, c = tta_members_with_cls(model, x, self.tta)
                probs.append(p)
                heads.append(c)
        return torch.cat(probs), (torch.cat(heads) if heads[0] is not None else None)

    @property
    def uses_mc_dropout(self) -> bool:
        """Whether Monte-Carlo dropout is on and at least one model has dropout to sample."""
        return bool(self.mc_dropout) and any(getattr(m, "has_dropout", False) for m in self.models)

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 4) -> list[Prediction]:
        """A :class:`Prediction` on each image's own pixel grid (maps zero outside the model's crop and padding)."""
        out: list[Prediction] = []
        pp = self.preprocessing
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            prepped = [self.preprocess(im) for im in chunk]
            net = self.predict_network(np.stack([x for x, _ in prepped]))
            for b, (_, frame) in enumerate(prepped):
                prob = pp.to_source(net.prob[b], frame)
                # one member (one model, one TTA transform, no MC dropout): the variance is zero, not worth mapping back
                variance = pp.to_source(net.variance[b], frame) if net.member_scores.shape[-1] > 1 else np.zeros_like(prob)
                out.append(
                    Prediction(
                        prob,
                        variance,
                        None if net.cls_prob is None else float(net.cls_prob[b]),
                        net.member_scores[b],
                    )
                )
        return out


def predict_dataset(
    predictor: Predictor, dataset: str | PathLike[str], ids: Sequence[str], save_probs: str | PathLike[str] | None = None
):
    """Yield ``(Prediction, truth)`` at the dataset's stored size for each id of a canonical dataset.

    Truth is the stored mask of the model's target (``masks/``, or ``lungs/`` for a
    lung-field model; all zeros when the image has none). With
    ``save_probs`` each map is also written there as ``<id>.npz`` (uint8).
    """

    target = predictor.target
    for image_id in ids:
        name = check_name(image_id, dataset)
        image = read_image(under(Path(dataset) / "images", f"{name}.png"))
        truth = read_truth(dataset, name, target, image.shape)
        pred = predictor.predict([image])[0]
        if save_probs is not None:
            save_probability_map(under(save_probs, f"{name}.npz"), pred.prob, cls_prob=pred.cls_prob)
        yield pred, truth
