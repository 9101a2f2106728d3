"""Autoencoder pretraining of an encoder on unlabelled radiographs (``ptxseg pretrain``).

The model is :class:`ptxseg.models.ConvAutoencoder` (any smp encoder + a decoder without skip connections). With
``noise > 0`` it is a denoising autoencoder: Gaussian noise of that standard deviation is added to the input and
the clean image is the target. Loss: mean squared error on ``[0, 1]`` intensities; horizontal flips as
augmentation. The optimiser comes from the same registry as training's (``optimizer.name``).

The output directory holds ``encoder.safetensors`` (+ ``encoder.json``): pass it as ``model.pretrained`` (or
``create_model(..., pretrained=PATH)``) and the segmentation model's encoder starts from these weights.
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
import torch
import torch.nn.functional as F

from ptxseg.clinical.inputs import gather_inputs
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.images import read_radiograph
from ptxseg.io.jsonfile import dumps
from ptxseg.io.tensors import non_finite_tensors, write_tensors
from ptxseg.models import ConvAutoencoder
from ptxseg.optim import OptimizerConfig, build_optimizer
from ptxseg.parallel import process_map


def _load(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str]:
    path, size = job
    try:
        image, _ = read_radiograph(path)
    except PtxsegError as exc:
        return path, None, exc.reason
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return path, np.round(small * 255).astype(np.uint8), ""


def load_images(
    inputs: Iterable[str | PathLike[str]], size: int, workers: int = 1, progress: Callable | None = None
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The radiographs among ``inputs`` (files, folders searched recursively, list files) read with the DICOM rules
    of :func:`ptxseg.io.images.read_radiograph`, resized to ``size²``: ``N×size×size`` uint8, and the unreadable
    files with their reasons.

    Raises:
        PtxsegError: an input does not exist, or fewer than 2 radiographs are readable.
    """
    paths = gather_inputs(list(inputs))
    missing = next((p for p in paths if not p.exists()), None)
    if missing is not None:
        raise PtxsegError(missing, "no such file or directory")
    if not paths:
        raise PtxsegError("inputs", "no image files found")
    loaded = process_map(_load, [(str(p), size) for p in paths], workers=workers, progress=progress)
    good = [a for _, a, _ in loaded if a is not None]
    skipped = [(p, why) for p, a, why in loaded if a is None]
    if len(good) < 2:
        raise PtxsegError("inputs", f"fewer than 2 readable radiographs ({len(skipped)} refused)")
    return np.stack(good), skipped


def _epoch(model: ConvAutoencoder, optimizer: torch.optim.Optimizer, data: torch.Tensor, batch_size: int, noise: float, rng) -> float:
    """One pass over ``data`` (N×S×S uint8) in a random order; the mean reconstruction MSE per image."""
    model.train()
    order = rng.permutation(len(data))
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
    return total / max(n, 1)


@dataclass(kw_only=True)
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
    *,
    encoder: str = "resnet34",
    size: int = 256,
    epochs: int = 10,
    batch_size: int = 8,
    optimizer: OptimizerConfig | None = None,
    noise: float = 0.1,
    minutes: float | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PretrainResult:
    """Train a (denoising) autoencoder on the radiographs in ``inputs`` (see :func:`load_images`); write its encoder
    to ``out``. ``optimizer`` defaults to Adam at lr 1e-3; ``minutes`` stops after the epoch in progress.

    Raises:
        PtxsegError: bad options or inputs, or the loss or a weight became NaN or infinite (nothing is saved).
    """
    if size % 32:
        raise PtxsegError("--size", f"must be a multiple of 32, got {size}")
    if noise < 0:
        raise PtxsegError("--noise", f"must be >= 0, got {noise}")
    optimizer = optimizer or OptimizerConfig()
    prepare_output_dir(out)  # a bad output folder fails now, not after the training time is spent
    images, skipped = load_images(inputs, size, workers, progress)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ConvAutoencoder(encoder)
    opt = build_optimizer(model.parameters(), optimizer)
    t0, losses = time.monotonic(), []
    data = torch.from_numpy(images)
    for epoch in range(epochs):
        losses.append(_epoch(model, opt, data, batch_size, noise, rng))
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
        "optimizer": optimizer.model_dump(),
        "mse_per_epoch": losses,
        "usage": f"model.pretrained: {out / 'encoder.safetensors'} (with model.encoder: {encoder})",
    }
    write_text_atomic(out / "encoder.json", dumps(info, indent=2))
    return PretrainResult(
        out=out, images=int(len(images)), skipped=skipped, epochs=len(losses), losses=losses, seconds=time.monotonic() - t0
    )
