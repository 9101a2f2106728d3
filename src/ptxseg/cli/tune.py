"""``ptxseg tune``: choose the operating point of a trained model on its validation fold."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.progress import console, progress_bar


def print_tables(result) -> None:
    sweep = Table(title="threshold sweep (no size rules)")
    for col in ("threshold", "Dice", "case sens.", "case spec."):
        sweep.add_column(col, justify="right")
    best_thr = max(result.threshold_sweep, key=lambda r: r["dice"])
    for r in result.threshold_sweep:
        mark = " *" if r is best_thr else ""
        sweep.add_row(
            f"{r['threshold']:.2f}", f"{r['dice']:.4f}{mark}", f"{r['case_sensitivity']:.3f}", f"{r['case_specificity']:.3f}"
        )
    console.print(sweep)
    grid = Table(title="mean Dice: threshold × minimum mask size (px at 1024²; best component size per cell)")
    grid.add_column("threshold", justify="right")
    for mm in result.min_mask_px:
        grid.add_column(str(mm), justify="right")
    i_best, k_best = np.unravel_index(np.argmax(result.size_grid), result.size_grid.shape)
    for i, r in enumerate(result.threshold_sweep):
        cells = [f"{v:.4f}" + (" *" if (i, k) == (i_best, k_best) else "") for k, v in enumerate(result.size_grid[i])]
        grid.add_row(f"{r['threshold']:.2f}", *cells)
    console.print(grid)
    trip = Table(title="best triplets (top threshold T with ≥ A px, else empty; keep pixels > B)")
    for col in ("T", "A", "B", "min comp.", "Dice", "case sens.", "case spec."):
        trip.add_column(col, justify="right")
    for r in result.triplets[:5]:
        trip.add_row(
            f"{r['top_threshold']:.2f}",
            str(r["top_min_px"]),
            f"{r['bottom_threshold']:.2f}",
            str(r["component_px"]),
            f"{r['dice']:.4f}",
            f"{r['case_sensitivity']:.3f}",
            f"{r['case_specificity']:.3f}",
        )
    console.print(trip)
    if result.gates:
        gate = Table(title="classifier gate c (mask emptied when the head's probability < c; best point per c)")
        for col in ("c", "threshold", "min comp.", "min mask", "Dice", "case sens.", "case spec."):
            gate.add_column(col, justify="right")
        top = max(result.gates, key=lambda r: r["dice"])
        for r in result.gates:
            gate.add_row(
                f"{r['cls_threshold']:.1f}",
                f"{r['threshold']:.2f}",
                str(r["component_px"]),
                str(r["min_mask_px"]),
                f"{r['dice']:.4f}" + (" *" if r is top else ""),
                f"{r['case_sensitivity']:.3f}",
                f"{r['case_specificity']:.3f}",
            )
        console.print(gate)


@app.command("tune")
def tune_command(
    model: Annotated[
        list[Path], typer.Argument(help="Run directory, bundle or ensemble file; several models are tuned as one ensemble.")
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset (default: the one the model was trained on).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Validation fold (default: the model's).")] = None,
    tta: Annotated[list[str] | None, typer.Option("--tta", help="TTA transforms (default: the model's).")] = None,
    weights: Annotated[list[float] | None, typer.Option("--weights", help="Ensemble weights, one per model (default: equal).")] = None,
    save_probs: Annotated[Path | None, typer.Option("--save-probs", help="Also keep the probability maps (.npz, uint8) here.")] = None,
    probs: Annotated[
        Path | None,
        typer.Option(
            "--probs", help="Tune on maps stored here (e.g. out-of-fold maps from 'evaluate --save-probs') instead of predicting."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Ensemble file (.json) to write the tuned point to; required for several models.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes computing the per-map grid statistics.")] = 1,
    prevalence: Annotated[
        float | None,
        typer.Option(
            "--prevalence",
            help="Score at this share of positives: p·(Dice of positives) + (1−p)·specificity (SIIM: 0.22); "
            "default: the maps as they are.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the tables without writing the operating point.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Grid-search threshold, component and mask sizes, triplets and classifier gates on validation maps; store the best."""
    from ptxseg.errors import PtxsegError
    from ptxseg.tasks.tune import TuneRequest, tune_model

    if out is not None and out.suffix != ".json":
        raise PtxsegError(out, "the ensemble file must end in .json")
    t0 = time.monotonic()
    request = TuneRequest(
        models=list(model),
        dataset=data,
        fold=fold,
        tta=tta,
        weights=weights,
        save_probs=save_probs,
        probs=probs,
        out=out,
        write=not dry_run,
        workers=workers,
        prevalence=prevalence,
    )
    done = tune_model(request, progress_bar("reading maps" if probs else "predicting", quiet))
    result = done.result
    print_tables(result)
    where = f"fold {done.fold}" if done.fold is not None else f"maps in {done.source}"
    if prevalence is not None:
        where += f", scored at prevalence {prevalence:g}"
    console.print(
        f"best: {result.family}: {result.best.to_dict()} → validation Dice {result.best_dice:.4f} on {done.images} images of {where}"
        f" with TTA {'+'.join(done.tta)} ({time.monotonic() - t0:.1f} s)",
        highlight=False,
    )
    if done.written is not None:
        console.print(f"operating point written to {done.written}; curves: {done.curves}")
