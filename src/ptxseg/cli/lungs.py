"""``ptxseg lungs``: lung-field maps (the patient's right and left lung) of radiographs, with the quality gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, err_console, progress_bar


@app.command("lungs")
def lungs_command(
    inputs: Annotated[list[Path], typer.Argument(help="DICOM/PNG/JPEG files, folders (recursive) or list files (.txt).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("lungs"),
    model: Annotated[
        Path | None, typer.Option("--model", help="Lung-field model: run directory, bundle (default: the shipped model).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Also print each result's JSON on stdout (one line each).")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Threads reading and decoding inputs ahead.")] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="ONNX Runtime threads for a bundle (default: one per core).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Where are the lungs: <id>_lungs.png (0 background, 1 right lung, 2 left lung), <id>.json with areas and the
    quality gate (is the film fit for triage?), and summary.csv."""
    from ptxseg.clinical.inputs import gather_inputs
    from ptxseg.io.atomic import prepare_output_dir
    from ptxseg.io.jsonfile import dumps
    from ptxseg.tasks.lungs import LungSegmenter, segment_lungs_batch

    prepare_output_dir(out, "--out")
    paths = gather_inputs(inputs, exclude=out)
    if not paths:
        raise PtxsegError(", ".join(map(str, inputs)), "no DICOM, PNG or JPEG inputs found")
    segmenter = LungSegmenter(model, threads=threads)
    t0 = time.monotonic()
    on_result = (lambda doc: print(dumps(doc), flush=True)) if json_out else None
    table = segment_lungs_batch(segmenter, paths, out, workers, progress_bar("segmenting lungs", quiet or json_out), on_result)
    elapsed = time.monotonic() - t0
    counts = table["status"].value_counts().to_dict()
    done = counts.get("ok", 0)
    ineligible = int((table["triage_eligible"] == False).sum())  # noqa: E712 - a column of True/False/None
    (err_console if json_out else console).print(
        f"{len(table)} inputs: {done} segmented, {counts.get('skipped', 0)} already complete, {counts.get('error', 0)} failed"
        f" in {elapsed:.1f} s; not fit for triage: {ineligible}; model: {segmenter.info['path']}; summary: {out / 'summary.csv'}",
        highlight=False,
    )
    for _, row in table[table["status"] == "error"].iterrows():
        err_console.print(f"{row['input']}: {row['reason']}", highlight=False)
    if counts.get("error", 0):
        raise typer.Exit(1)
