"""``ptxseg submit``: a Kaggle-format submission CSV from a model and a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, progress_bar


@app.command("submit")
def submit_command(
    model: Annotated[list[Path], typer.Option("--model", help="Run directory/bundle; repeat for an ensemble.")],
    data: Annotated[Path, typer.Option("--data", help="Canonical dataset holding the images to predict.")],
    out: Annotated[Path, typer.Option("--out", help="Submission CSV to write.")] = Path("submission.csv"),
    split: Annotated[str | None, typer.Option("--split", help="Predict every image of this split (default: test).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Predict this fold of folds.csv instead.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="RLE format: relative (SIIM stage 1) or absolute (stage 2).")] = "relative",
    tta: Annotated[list[str] | None, typer.Option("--tta", help="TTA transforms (default: the model's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write ImageId,EncodedPixels rows (-1 when empty) at each source image's own size."""
    from ptxseg.infer.predictor import Predictor
    from ptxseg.tasks.evaluate import dataset_ids
    from ptxseg.tasks.submit import write_submission

    if fmt not in ("relative", "absolute"):
        raise PtxsegError("--format", f"must be relative or absolute, got {fmt!r}")
    ids = dataset_ids(data, fold, split if (split or fold is not None) else "test")
    rows = write_submission(Predictor(model, tta=tta), data, ids, out, fmt, progress_bar("predicting", quiet))
    positive = int((rows["EncodedPixels"] != "-1").sum())
    console.print(f"wrote {out}: {len(rows)} images, {positive} with a predicted pneumothorax ({fmt} RLE)")
