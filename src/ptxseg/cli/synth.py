"""``ptxseg synth``: synthetic chest-radiograph phantoms with pneumothorax and lung masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, progress_bar
from ptxseg.synth.dataset import synth_dataset


def print_synth_summary(rows: list[dict], out: Path, layout: str) -> None:
    """Counts of a phantom dataset: prevalence, sides, sizes."""
    pos = [r for r in rows if r["positive"]]
    table = Table(title=f"ptxseg synth → {out} ({layout} layout)")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("images", str(len(rows)))
    table.add_row("with pneumothorax", f"{len(pos)} ({len(pos) / len(rows):.1%})")
    for side in ("right", "left", "bilateral"):
        table.add_row(f"  {side}", str(sum(r["ptx_side"] == side for r in pos)))
    if pos:
        areas = np.array([r["mask_area"] for r in pos])
        ratios = np.array([max(r["ratio_right"], r["ratio_left"]) for r in pos])
        table.add_row("mask area px (min / median / max)", f"{areas.min()} / {int(np.median(areas))} / {areas.max()}")
        table.add_row("ratio % of lung (median / max)", f"{np.median(ratios):.1f} / {ratios.max():.1f}")
    table.add_row("patients", str(len({r["PatientID"] for r in rows})))
    console.print(table)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    n: Annotated[int, typer.Option("-n", help="Number of phantoms.")] = 100,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 512,
    positive_fraction: Annotated[float, typer.Option(help="Share of images with a pneumothorax (SIIM: 0.22).")] = 0.22,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and options give byte-identical files.")] = 0,
    masks_from: Annotated[
        Path | None, typer.Option(help="RLE CSV of real masks (e.g. SIIM train-rle.csv.gz) whose shapes to reuse.")
    ] = None,
    layout: Annotated[
        str, typer.Option(help="canonical (convert's folder), png (published layout) or kaggle (DICOM + RLE).")
    ] = "canonical",
    test_fraction: Annotated[float, typer.Option(help="Share of patients held out as a test split (0: none).")] = 0.0,
    workers: Annotated[int, typer.Option(min=0, help="Parallel worker processes (default: CPU count).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    backgrounds: Annotated[
        Path | None,
        typer.Option(help="Real radiographs to insert real SIIM shapes into (needs --masks-from; docs/sim2real.md)."),
    ] = None,
    lung_model: Annotated[
        Path | None, typer.Option(help="With --backgrounds: the lung-field model (default: the shipped real one).")
    ] = None,
    tension_fraction: Annotated[
        float | None,
        typer.Option(help="With --backgrounds: share of unilateral lesions drawn as tension (mediastinal shift; default 0.02)."),
    ] = None,
) -> int:
    """Write N synthetic chest radiographs with pneumothorax and lung masks — phantoms, or with --backgrounds real
    radiographs with inserted lesions."""
    if backgrounds is not None:
        from ptxseg.tasks.sim2real import TENSION_FRACTION, insert_dataset

        if masks_from is None:
            raise PtxsegError("--backgrounds", "needs --masks-from (the real SIIM train-rle.csv.gz) for the lesion shapes")
        if layout != "canonical" or test_fraction:
            raise PtxsegError("--backgrounds", "writes the canonical layout only, without a test split (use ptxseg split)")
        rows, left_out = insert_dataset(
            backgrounds, out, n, masks_from, size=size, positive_fraction=positive_fraction, seed=seed,
            lung_model=lung_model, tension_fraction=TENSION_FRACTION if tension_fraction is None else tension_fraction,
            progress=progress_bar("inserting", quiet),
        )  # fmt: skip
        print_synth_summary(rows, out, "canonical, inserted lesions")
        if any(left_out.values()):
            console.print(f"left out: {left_out['unreadable']} unreadable, {left_out['no_lungs']} without both lung fields")
        return 0
    rows = synth_dataset(
        out,
        n,
        size=size,
        positive_fraction=positive_fraction,
        seed=seed,
        masks_from=masks_from,
        layout=layout,
        workers=workers or os.cpu_count() or 1,
        progress=progress_bar("synthesising", quiet),
        test_fraction=test_fraction,
    )
    print_synth_summary(rows, out, layout)
    return 0
