"""``ptxseg report``: a self-contained HTML report of a model's evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.cli.progress import console, progress_bar
from ptxseg.errors import PtxsegError


@app.command("report")
def report_command(
    source: Annotated[Path, typer.Argument(help="A run directory, or an evaluation JSON from 'ptxseg evaluate --model ... --json'.")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset (default: the model's training dataset).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Evaluate this fold (default: the model's validation fold).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Evaluate this split instead (e.g. test).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: SOURCE's folder / report).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write report.html (+ PNGs): metrics with CIs, operating point tables, curves, confusion matrix, case overlays."""
    from ptxseg.checkpoint import read_meta, resolve_weights
    from ptxseg.evaluate import dataset_ids
    from ptxseg.report import report_model

    evaluation = None
    if source.is_file() and source.suffix == ".json":
        evaluation = json.loads(source.read_text())
        if "model_paths" not in evaluation or "data" not in evaluation:
            raise PtxsegError(source, "not an evaluation of a model (write one with 'ptxseg evaluate --model ... --data ... --json')")
        model, data = [Path(p) for p in evaluation["model_paths"]], Path(evaluation["data"])
        ids = list(evaluation["per_image_dice"])
        out = out or source.parent / "report"
    else:
        model = [source]
        meta = read_meta(resolve_weights(source))
        data = data or Path(meta["training_data"]["dataset"])
        if split is None and fold is None:
            fold = meta["training_data"].get("fold", 0)
        ids = dataset_ids(data, fold, split)
        out = out or (source if source.is_dir() else source.parent) / "report"
    page = report_model(model, data, ids, out, evaluation, progress=progress_bar("predicting", quiet))
    console.print(f"report: {page}")
