"""``ptxseg tune``: choose the operating point of a trained model on its validation fold."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.cli.progress import console, progress_bar
from ptxseg.errors import PtxsegError


def plot_threshold_curves(sweep: list[dict], path: Path) -> None:
    """Dice, case sensitivity and specificity against the threshold (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptxseg.io.atomic import atomic_path

    x = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("dice", "SIIM mean Dice"), ("case_sensitivity", "case sensitivity"), ("case_specificity", "case specificity")):
        ax.plot(x, [r[key] for r in sweep], marker="o", ms=3, label=label)
    ax.set_xlabel("probability threshold (no size rule)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


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


@app.command("tune")
def tune_command(
    model: Annotated[Path, typer.Argument(help="Run directory (or bundle) whose operating point is tuned.")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset (default: the one the model was trained on).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Validation fold (default: the model's).")] = None,
    tta: Annotated[list[str] | None, typer.Option("--tta", help="TTA transforms (default: the model's).")] = None,
    save_probs: Annotated[Path | None, typer.Option("--save-probs", help="Also keep the probability maps (.npz, uint8) here.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the tables without writing the operating point.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Grid-search threshold, component and mask sizes and triplets on validation; store the best in the model."""
    from ptxseg.checkpoint import read_meta, resolve_weights
    from ptxseg.infer import Predictor, predict_dataset
    from ptxseg.io.atomic import write_text_atomic
    from ptxseg.train.data import fold_split
    from ptxseg.tune import collect, search

    weights = resolve_weights(model)
    meta = read_meta(weights)
    trained = meta.get("training_data", {})
    data = data or (Path(trained["dataset"]) if trained.get("dataset") else None)
    if data is None:
        raise PtxsegError("--data", "the model does not record its dataset; pass --data")
    fold = trained.get("fold", 0) if fold is None else fold
    ids = fold_split(data, fold, create=False).val_ids
    predictor = Predictor([weights], tta=tta)
    if save_probs is not None:
        save_probs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stats = collect(predict_dataset(predictor, data, ids, save_probs), len(ids), progress=progress_bar("predicting", quiet))
    t1 = time.monotonic()
    result = search(stats)
    t2 = time.monotonic()
    print_tables(result)
    op = result.best
    console.print(
        f"best: {result.family}: {op.to_dict()} → validation Dice {result.best_dice:.4f} on {len(ids)} images of fold {fold}"
        f" (prediction {t1 - t0:.1f} s, grid {t2 - t1:.2f} s)",
        highlight=False,
    )
    curves = weights.parent / "threshold_curves.png"
    plot_threshold_curves(result.threshold_sweep, curves)
    if not dry_run:
        meta["operating_point"] = op.to_dict()
        meta.setdefault("metrics", {})["val_dice_tuned"] = result.best_dice
        meta["tuning"] = {
            "fold": fold,
            "images": len(ids),
            "tta": predictor.tta,
            "family": result.family,
            "threshold_sweep": result.threshold_sweep,
            "triplets_top5": result.triplets[:5],
        }
        write_text_atomic(weights.with_suffix(".json"), json.dumps(meta, indent=2))
        console.print(f"operating point written to {weights.with_suffix('.json')}; curves: {curves}")
