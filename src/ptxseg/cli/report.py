"""``ptxseg report``: a self-contained HTML report of a model's evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.ensemble import FORMAT as ENSEMBLE_FORMAT
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, progress_bar


def _read_json(path: Path) -> dict:
    from ptxseg.io.jsonfile import read_json

    doc = read_json(path)
    if not isinstance(doc, dict):
        raise PtxsegError(path, "not an evaluation JSON or ensemble file")
    return doc


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
    from ptxseg.checkpoint import read_model_card, resolve_weights
    from ptxseg.ensemble import read_ensemble
    from ptxseg.evaluate import dataset_ids
    from ptxseg.report import report_model

    evaluation, weights = None, None
    doc = _read_json(source) if source.is_file() and source.suffix == ".json" else None
    if doc is not None and doc.get("format") != ENSEMBLE_FORMAT:
        if "model_paths" not in doc or "data" not in doc:
            raise PtxsegError(source, "not an evaluation of a model (write one with 'ptxseg evaluate --model ... --data ... --json')")
        if tta and tta != doc.get("tta"):
            raise PtxsegError("--tta", "an evaluation JSON was made with its own TTA; re-run 'ptxseg evaluate --tta ...' instead")
        evaluation, model, data = doc, [Path(p) for p in doc["model_paths"]], Path(doc["data"])
        weights, tta = doc.get("model_weights"), doc.get("tta")
        ids = list(evaluation["per_image_dice"])
        out = out or source.parent / "report"
    else:
        model = [source]
        card = read_model_card(resolve_weights(read_ensemble(source).members[0] if doc is not None else source))
        trained = card.training_data
        if data is None and (trained is None or trained.dataset is None):
            raise PtxsegError("--data", "the model does not record its dataset; pass --data")
        data = data or Path(trained.dataset)
        if split is None and fold is None:
            if doc is not None:  # members of an ensemble may have trained on each other's validation folds
                raise PtxsegError("--fold/--split", "an ensemble is reported on an explicit --split (e.g. test) or --fold")
            fold = trained.fold if trained is not None and trained.fold is not None else 0
        ids = dataset_ids(data, fold, split)
        out = out or (source if source.is_dir() else source.parent) / "report"
    page = report_model(model, data, ids, out, evaluation, progress=progress_bar("predicting", quiet), weights=weights, tta=tta)
    console.print(f"report: {page}")
