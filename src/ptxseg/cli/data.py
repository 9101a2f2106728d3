"""``ptxseg convert`` and ``ptxseg split``: build and fold a canonical dataset."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.data.convert import ConvertOptions, ConvertResult, convert_dataset
from ptxseg.data.qc import QC_TAGS, REFUSAL_TAGS
from ptxseg.data.split import ALWAYS_TRAIN, fold_summary, split_dataset
from ptxseg.errors import PtxsegError
from ptxseg.limits import check_grid_side
from ptxseg.progress import console, progress_bar


def print_convert_summary(result: ConvertResult) -> None:
    """The table ``ptxseg convert`` prints: counts, then one row per QC tag."""
    rows = result.records
    images = sum(r["has_image"] == 1 for r in rows)
    pos = sum(r["positive"] == 1 and r["has_image"] == 1 for r in rows)
    table = Table(title=f"ptxseg convert → {result.out}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("source items", str(len(rows)))
    table.add_row("converted now / resumed", f"{result.converted} / {result.resumed}")
    table.add_row("images written", str(images))
    table.add_row("  with pneumothorax", str(pos))
    lungs = sum(r.get("lung_area") is not None and r["has_image"] == 1 for r in rows)
    if lungs:
        table.add_row("  with lung fields", str(lungs))
    unknown = sum(r.get("ignore_area") is not None and r["has_image"] == 1 for r in rows)
    if unknown:
        table.add_row("  with unknown regions (ignore/)", str(unknown))
    table.add_row("  test split", str(sum(r["split"] == "test" and r["has_image"] == 1 for r in rows)))
    if result.dropped:
        table.add_row("dropped by --drop-qc", str(result.dropped))
    for tag, n in sorted(result.tag_counts.items()):
        table.add_row(f"qc: {tag}", str(n), end_section=False)
    console.print(table)
    for r in rows:
        if r["qc_reason"]:
            console.print(f"  refused: {r['qc_reason']}", highlight=False)


@app.command("convert")
def convert(
    src: Annotated[Path, typer.Argument(help="Source folder (Kaggle DICOM tree, PNG layout or images/ + masks/ folders).")],
    out: Annotated[Path, typer.Argument(help="Output canonical dataset folder (created; re-run to resume).")],
    rle_csv: Annotated[
        Path | None, typer.Option(help="RLE CSV of the Kaggle layout (default: the one *rle*.csv[.gz] in SRC).")
    ] = None,
    rle_format: Annotated[str, typer.Option(help="RLE format: auto, relative (SIIM stage 1) or absolute.")] = "auto",
    rle_size: Annotated[int, typer.Option(help="Side of the image grid the RLE is written on (SIIM: 1024).")] = 1024,
    layout: Annotated[str, typer.Option(help="Source layout: auto, kaggle, png or folders (images/ + masks/).")] = "auto",
    target: Annotated[
        str, typer.Option(help="folders layout: what the masks outline, pneumothorax (masks/) or lungs (lungs/, sided).")
    ] = "pneumothorax",
    ignore_value: Annotated[
        int, typer.Option(help="folders layout: mask value meaning 'unknown' (left out of losses and metrics); 0 for none.")
    ] = 127,
    stratify: Annotated[
        str | None, typer.Option(help="folders layout: a column of SRC/manifest.csv whose shares every fold keeps.")
    ] = None,
    size: Annotated[int, typer.Option(help="Stored image side in pixels.")] = 1024,
    aspect: Annotated[str, typer.Option(help="Non-square images: pad (keep proportions) or stretch.")] = "pad",
    drop_qc: Annotated[bool, typer.Option("--drop-qc", help="Leave items with any QC tag out of the manifest.")] = False,
    no_voi: Annotated[bool, typer.Option("--no-voi", help="Ignore VOI LUT / window of DICOM files.")] = False,
    jpeg_quality: Annotated[
        int | None,
        typer.Option(
            "--jpeg-quality",
            help="Store every image as re-encoded at this JPEG quality after resizing: one last step for all sources, "
            "so lossless and lossy files look alike (e.g. 89 for the SIIM films).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Parallel worker processes (default: CPU count).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> int:
    """Build a canonical dataset folder: images/, masks/, manifest.csv.

    Resumable: re-running with the same OUT skips finished items. A corrupt
    input is tagged in the manifest and the summary; it does not stop the run.
    """
    check_grid_side(rle_size, "--rle-size")
    opts = ConvertOptions(
        size=size,
        aspect=aspect,  # type: ignore[arg-type]
        drop_qc=drop_qc,
        apply_voi=not no_voi,
        target=target,  # type: ignore[arg-type]
        ignore_value=ignore_value or None,
        stratify=stratify,
        jpeg_quality=jpeg_quality,
    )
    result = convert_dataset(
        src,
        out,
        layout=layout,  # type: ignore[arg-type]
        rle_csv=rle_csv,
        rle_format=rle_format,
        rle_shape=(rle_size, rle_size),
        options=opts,
        workers=workers or os.cpu_count() or 1,
        progress=progress_bar("converting", quiet),
    )
    print_convert_summary(result)
    with_image = [r for r in result.records if r["source"]]
    if with_image and all(set(r["_tags"]) & REFUSAL_TAGS for r in with_image):
        raise PtxsegError(src, f"no image could be converted: all {len(with_image)} source images were refused (reasons above)")
    return 0


@app.command("split")
def split(
    dataset: Annotated[Path, typer.Argument(help="Canonical dataset folder (with manifest.csv).")],
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same folds.")] = 42,
    size_strata: Annotated[
        int, typer.Option(min=0, help="Also stratify positives by mask-area quantile into this many bins (3: terciles; 0: off).")
    ] = 0,
    unlabelled: Annotated[
        bool,
        typer.Option(
            "--unlabelled/--no-unlabelled",
            help="Keep images without any annotation as unlabelled films (fold -1: in every fold's training set, "
            "never validated; the pneumothorax loss ignores them, the classifier head learns positive vs unlabelled).",
        ),
    ] = False,
) -> int:
    """Write DATASET/folds.csv: folds stratified by label (and lesion size), grouped by PatientID."""
    table = split_dataset(dataset, folds, seed, size_strata, unlabelled)
    summary = fold_summary(table)
    out = Table(title=f"{folds} folds of {dataset} (seed {seed})")
    strata = [c for c in summary.columns if c.startswith("stratum ")]
    for col in ("fold", "images", "patients", "positive", "positive share", *strata):
        out.add_column(col, justify="right")
    for fold, row in summary.iterrows():
        share = "—" if math.isnan(row["positive_share"]) else f"{row['positive_share']:.3f}"
        cells = [str(int(row[c])) for c in ("images", "patients", "positive", *strata)]
        out.add_row("unlabelled" if fold == ALWAYS_TRAIN else str(fold), *cells[:3], share, *cells[3:])
    console.print(out)
    console.print(f"wrote {Path(dataset) / 'folds.csv'}", highlight=False)
    return 0


__all__ = ["convert", "split", "QC_TAGS"]
