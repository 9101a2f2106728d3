"""Autoencoder pretraining of an encoder on unlabelled radiographs (``ptxseg pretrain``).

The PTXSeg-Net report initialises its encoder from a convolutional
autoencoder trained to reconstruct unlabelled chest radiographs. Here the
autoencoder is any smp encoder (the one the segmentation model will use)
followed by a light decoder that upsamples the deepest features back to the
image, **without skip connections** (with them the identity would be
learnt). With ``noise > 0`` it is a denoising autoencoder: Gaussian noise of
that standard deviation is added to the input and the clean image is the
target. Loss: mean squared error on ``[0, 1]`` intensities.

The output directory holds ``encoder.safetensors`` (+ ``encoder.json``): pass
it as ``model.pretrained`` (or ``create_model(..., pretrained=PATH)``) and the
segmentation model's encoder starts from these weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.images import RADIOGRAPH_SUFFIXES, read_radiograph
from ptxseg.io.jsonfile import dumps
from ptxseg.io.tensors import non_finite_tensors, write_tensors
from ptxseg.parallel import process_map

_IMAGE_SUFFIXES = RADIOGRAPH_SUFFIXES | {""}  # and extension-less DICOM files


class ConvAutoencoder(nn.Module):
    """``encoder`` (an smp encoder, 1 input channel) + an upsampling decoder to a 1-channel image in [0, 1]."""

    def __init__(self, encoder: str = "resnet34", depth: int = 5, width: int = 32) -> None:
        super().__init__()
        try:
            self.encoder = smp.encoders.get_encoder(encoder, in_channels=1, depth=depth, weights=None)
        except KeyError:
            raise PtxsegError("--encoder", f"unknown smp encoder {encoder!r}; pretraining needs an smp/timm encoder name") from None
        channels = self.encoder.out_channels[-1]
        layers: list[nn.Module] = []
        for k in range(depth):
            out = max(width, channels // 2) if k < depth - 1 else width
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)[-1]))


def find_images(inputs: Iterable[str | PathLike[str]]) -> list[Path]:
    """DICOM and raster files among ``inputs`` (files, or folders searched recursively), sorted."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith(".")]
        elif p.is_file():
            found.append(p)
        else:
            raise PtxsegError(p, "no such file or folder")
    return sorted(set(found))


def _load(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str]:

    path, size = job
    try:
        image, _ = read_radiograph(path)
    except PtxsegError as exc:
        return path, None, exc.reason
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return path, np.round(small * 255).astype(np.uint8), ""


@dataclass
class PretrainResult:
    out: Path
    images: int
    skipped: list[tuple[str, str]]
    epochs: int
    losses: list[float]
    seconds: float


def pretrain(
    inputs: Iterable[str | PathLike[str]],
    out: str | PathLike[str],
    encoder: str = "resnet34",
    size: int = 256,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    noise: float = 0.1,
    minutes: float | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PretrainResult:
    """Train a (denoising) autoencoder on the radiographs in ``inputs``; write its encoder to ``out``.

    Images are read with the DICOM rules of :func:`ptxseg.io.images.read_radiograph`
    (modality/VOI LUT, MONOCHROME1 inverted), resized to ``size²`` and kept in
    memory as uint8. Unreadable files are skipped and listed.
    """
    if size % 32:
        raise PtxsegError("--size", f"must be a multiple of 32, got {size}")
    if noise < 0:
        raise PtxsegError("--noise", f"must be >= 0, got {noise}")
    prepare_output_dir(out)  # a bad output folder fails now, not after the training time is spent
    paths = find_images(inputs)
    if not paths:
        raise PtxsegError("inputs", "no image files found")
    loaded = process_map(_load, [(str(p), size) for p in paths], workers=workers, progress=progress)
    images = np.stack([a for _, a, _ in loaded if a is not None]) if any(a is not None for _, a, _ in loaded) else None
    skipped = [(p, why) for p, a, why in loaded if a is None]
    if images is None or len(images) < 2:
        raise PtxsegError("inputs", f"fewer than 2 readable radiographs ({len(skipped)} refused)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ConvAutoencoder(encoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    t0, losses = time.monotonic(), []
    data = torch.from_numpy(images)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(images))
        total, n = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            clean = data[idx].float().div(255).unsqueeze(1)
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            clean[flip] = clean[flip].flip(-1)
            noisy = (clean + noise * torch.randn_like(clean)).clamp(0, 1) if noise else clean
            loss = F.mse_loss(model(noisy), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        losses.append(total / max(n, 1))
        if on_epoch:
            on_epoch(epoch, losses[-1])
        if minutes is not None and time.monotonic() - t0 > minutes * 60:
            break
    out = Path(out)
    bad = non_finite_tensors(model.state_dict())
    if bad or not all(math.isfinite(v) for v in losses):
        raise PtxsegError(
            "pretrain", f"diverged: the loss or {len(bad)} weight tensors are NaN or infinite; nothing saved (lower --lr)"
        )
    write_tensors(out / "encoder.safetensors", model.encoder.state_dict(), metadata={"encoder": encoder})
    write_tensors(out / "autoencoder.safetensors", model.state_dict())
    info = {
        "encoder": encoder,
        "size": size,
        "images": int(len(images)),
        "skipped": skipped,
        "epochs": len(losses),
        "noise": noise,
        "mse_per_epoch": losses,
        "usage": f"model.pretrained: {out / 'encoder.safetensors'} (with model.encoder: {encoder})",
    }
    write_text_atomic(out / "encoder.json", dumps(info, indent=2))
    return PretrainResult(out, int(len(images)), skipped, len(losses), losses, time.monotonic() - t0)
