"""``ptxseg evaluate``: SIIM-style scores of predicted masks against ground truth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps
from ptxseg.progress import console, err_console, progress_bar
from ptxseg.tasks.evaluate import ROWS


def print_metrics(metrics: dict, title: str) -> None:
    """The metric table with 95 % bootstrap intervals where computed."""
    ci = metrics.get("ci95", {})
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for key, label in ROWS:
        v = metrics.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        lo_hi = ci.get(key)
        table.add_row(label, f"{v:.4f}", f"{lo_hi[0]:.4f}–{lo_hi[1]:.4f}" if lo_hi else "")
    table.add_row("images / with pneumothorax", f"{metrics['images']} / {metrics['positives']}", "")
    table.add_row(
        "confusion (TP FP FN TN)", f"{metrics['case_tp']} {metrics['case_fp']} {metrics['case_fn']} {metrics['case_tn']}", ""
    )
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    pred: Annotated[Path | None, typer.Option("--pred", help="Predicted masks: RLE CSV or a folder of <ImageId>.png.")] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Ground truth: RLE CSV (e.g. train-rle.csv) or a folder of PNG masks.")
    ] = None,
    model: Annotated[
        list[Path] | None, typer.Option("--model", help="Run directory/bundle (repeat for an ensemble) to predict with.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="With --model: the canonical dataset to predict.")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="With --model: evaluate this fold of folds.csv.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="With --model: evaluate every image of this split (e.g. test).")] = None,
    tta: Annotated[list[str] | None, typer.Option("--tta", help="With --model: TTA transforms (default: the model's).")] = None,
    weights: Annotated[list[float] | None, typer.Option("--weights", help="With several --model: ensemble weights.")] = None,
    save_probs: Annotated[
        Path | None, typer.Option("--save-probs", help="With --model: keep each probability map here (<id>.npz) for 'tune --probs'.")
    ] = None,
    size: Annotated[int, typer.Option(help="Image side the RLE strings refer to (PNG masks are resized to it).")] = 1024,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")] = None,
    min_case_px: Annotated[
        int, typer.Option(min=1, help="A case is detected when its predicted mask has at least this many pixels.")
    ] = 1,
    bootstrap: Annotated[int, typer.Option(min=0, max=1_000_000, help="Bootstrap resamples for the 95% intervals (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score predicted masks against ground truth (--pred/--truth), or a model on a dataset (--model/--data), SIIM-style."""
    from ptxseg.io.atomic import prepare_output_dir
    from ptxseg.limits import check_grid_side
    from ptxseg.tasks.evaluate import dataset_ids, evaluate_masks, evaluate_model, open_masks

    check_grid_side(size, "--size")
    if save_probs is not None:
        prepare_output_dir(save_probs, "--save-probs folder")
    if model:
        from ptxseg.infer.predictor import Predictor

        if pred is not None or truth is not None or data is None:
            raise PtxsegError("--model", "evaluate a model with --model RUN_DIR --data DATASET (--fold K | --split test)")
        predictor = Predictor(model, weights=weights, tta=tta)
        ids = dataset_ids(data, fold, split)
        result = evaluate_model(predictor, data, ids, min_case_px, bootstrap, seed, progress_bar("predicting", quiet), save_probs)
        pred, truth = Path(",".join(map(str, model))), data / (f"fold {fold}" if fold is not None else f"split {split}")
    elif save_probs is not None or weights:
        raise PtxsegError("--save-probs/--weights", "only with --model")
    elif pred is None or truth is None:
        raise PtxsegError("--pred/--truth", "give --pred and --truth, or --model and --data")
    else:
        result = evaluate_masks(
            open_masks(pred, size), open_masks(truth, size), min_case_px, bootstrap, seed, progress_bar("scoring", quiet)
        )
    if result.extra_in_pred:
        shown = ", ".join(result.extra_in_pred[:5]) + (" …" if len(result.extra_in_pred) > 5 else "")
        err_console.print(f"ignored {len(result.extra_in_pred)} predicted images absent from the truth: {shown}", highlight=False)
    if result.missing_in_pred:
        err_console.print(f"{len(result.missing_in_pred)} truth images have no prediction: scored as empty", highlight=False)
    print_metrics(result.metrics, f"ptxseg evaluate: {pred} vs {truth}")
    if json_out is not None:
        extra = (
            {
                "model_paths": [str(m) for m in model],
                "model_weights": list(map(float, predictor.weights)),
                "data": str(data),
                "fold": fold,
                "split": split,
            }
            if model
            else {}
        )
        doc = {
            "pred": str(pred),
            "truth": str(truth),
            "size": size,
            **extra,
            **result.metrics,
            "per_image_dice": dict(zip(result.ids, map(float, result.dice), strict=True)),
        }
        write_text_atomic(json_out, dumps(doc, indent=2))
        console.print(f"wrote {json_out}")
