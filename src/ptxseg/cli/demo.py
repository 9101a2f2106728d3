"""``ptxseg demo``: the main job on its built-in default.

For now: write a small SIIM-shaped source tree (DICOM + RLE CSV, with QC
cases), convert it through the real ingestion path, split it into
patient-grouped folds and print the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.cli.data import print_convert_summary
from ptxseg.cli.progress import console, progress_bar
from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.sample import write_kaggle_sample
from ptxseg.data.split import fold_summary, split_dataset


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its data.")] = Path("demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes, for smoke tests.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> int:
    """Build a small SIIM-shaped dataset, ingest it, split it, print the summary."""
    n, size = (16, 128) if quick else (60, 256)
    source = out / "source"
    console.print(f"[bold]1/3[/bold] writing a SIIM-shaped sample ({n} DICOMs + train-rle.csv) to {source}")
    rle_csv = write_kaggle_sample(source, n=n, size=size, seed=seed)
    dataset = out / "dataset"
    console.print(f"[bold]2/3[/bold] ptxseg convert {source} {dataset} --rle-size {size} --size {size}")
    result = convert_dataset(
        source,
        dataset,
        rle_csv=rle_csv,
        rle_shape=(size, size),
        options=ConvertOptions(size=size),
        workers=2,
        progress=progress_bar("converting"),
    )
    print_convert_summary(result)
    folds = 3 if quick else 5
    console.print(f"[bold]3/3[/bold] ptxseg split {dataset} --folds {folds}")
    console.print(fold_summary(split_dataset(dataset, folds=folds, seed=seed)).to_string())
    console.print(
        f"\nDataset ready at {dataset} (manifest.csv, folds.csv). The sample images are schematic and "
        "exercise the data formats only; they are not patients."
    )
    return 0
