"""``ptxseg report``: a self-contained HTML report of a model's evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.progress import console, progress_bar


@app.command("report")
def report_command(
    source: Annotated[
        Path,
        typer.Argument(help="A run directory, an ensemble file (from 'tune --out') or an evaluation JSON (from 'evaluate --json')."),
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset (default: the model's training dataset).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Evaluate this fold (default: the model's validation fold).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Evaluate this split instead (e.g. test).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: SOURCE's folder / report).")] = None,
    tta: Annotated[list[str] | None, typer.Option("--tta", help="TTA transforms (default: the model's or the evaluation's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write report.html (+ PNGs): metrics with CIs, operating point tables, curves, confusion matrix, case overlays."""
    from ptxseg.tasks.report import report_model, resolve_report_source

    r = resolve_report_source(source, data, fold, split, out, tta)
    page = report_model(
        r.models, r.data, r.ids, r.out, r.evaluation, progress=progress_bar("predicting", quiet), weights=r.weights, tta=r.tta
    )
    console.print(f"report: {page}")
