"""``ptxseg pretrain``: a (denoising) autoencoder on unlabelled radiographs, for encoder initialisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, err_console, progress_bar


@app.command("pretrain")
def pretrain_command(
    inputs: Annotated[list[Path], typer.Argument(help="DICOM/PNG/JPEG files or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for encoder.safetensors.")] = Path("pretrained"),
    encoder: Annotated[str, typer.Option(help="smp encoder to pretrain (the one the segmentation model uses).")] = "resnet34",
    size: Annotated[int, typer.Option(help="Image side in pixels (multiple of 32).")] = 256,
    epochs: Annotated[int, typer.Option(help="Epochs over the images.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 8,
    optimizer: Annotated[str, typer.Option(help="Optimiser (as a config's optimizer.name: adam, adamw, sgd).")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (as optimizer.weight_decay).")] = 0.0,
    noise: Annotated[float, typer.Option(help="Denoising: std of Gaussian noise added to inputs (0: plain autoencoder).")] = 0.1,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget; stops after the epoch in progress.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Processes reading the images.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Pretrain an encoder as a convolutional autoencoder; use it with model.pretrained=OUT/encoder.safetensors."""
    from ptxseg.optim import OPTIMIZERS, OptimizerConfig
    from ptxseg.tasks.pretrain import pretrain

    if optimizer not in OPTIMIZERS:
        raise PtxsegError("--optimizer", f"unknown optimiser {optimizer!r}; choose one of {', '.join(OPTIMIZERS.names())}")
    if not lr > 0:
        raise PtxsegError("--lr", f"must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise PtxsegError("--weight-decay", f"must be >= 0, got {weight_decay}")
    settings = OptimizerConfig(name=optimizer, lr=lr, weight_decay=weight_decay)

    def on_epoch(epoch: int, loss: float) -> None:
        err_console.print(f"epoch {epoch + 1}/{epochs}: reconstruction MSE {loss:.5f}", highlight=False)

    result = pretrain(
        inputs,
        out,
        encoder=encoder,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=settings,
        noise=noise,
        minutes=minutes,
        seed=seed,
        workers=workers,
        progress=progress_bar("reading", quiet),
        on_epoch=on_epoch,
    )
    for path, why in result.skipped:
        err_console.print(f"  skipped {path}: {why}", highlight=False)
    console.print(
        f"pretrained {encoder} on {result.images} radiographs ({len(result.skipped)} skipped), {result.epochs} epochs, "
        f"MSE {result.losses[0]:.5f} → {result.losses[-1]:.5f} in {result.seconds / 60:.1f} min\n"
        f"use it: --set model.encoder={encoder} --set model.pretrained={out / 'encoder.safetensors'}",
        highlight=False,
    )
