"""``ptxseg demo``: the main job on its built-in default.

For now: synthesise phantom chest radiographs as a SIIM-shaped source tree
(DICOM + RLE CSV, as the challenge distributed them), ingest them through the
real conversion path, split them into patient-grouped folds and print the
summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.cli.data import print_convert_summary
from ptxseg.cli.progress import console, progress_bar
from ptxseg.cli.synth import print_synth_summary
from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.split import fold_summary, split_dataset
from ptxseg.synth.dataset import synth_dataset


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its data.")] = Path("demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes, for smoke tests.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> int:
    """Synthesise a SIIM-shaped phantom dataset, ingest it, split it, print the summary."""
    n, size, folds = (24, 128, 3) if quick else (200, 256, 5)
    source = out / "source"
    console.print(f"[bold]1/3[/bold] ptxseg synth {source} -n {n} --size {size} --layout kaggle")
    rows = synth_dataset(source, n, size=size, seed=seed, layout="kaggle", workers=2, progress=progress_bar("synthesising"))
    print_synth_summary(rows, source, "kaggle")
    dataset = out / "dataset"
    console.print(f"[bold]2/3[/bold] ptxseg convert {source} {dataset} --rle-size {size} --size {size}")
    result = convert_dataset(
        source,
        dataset,
        rle_shape=(size, size),
        options=ConvertOptions(size=size),
        workers=2,
        progress=progress_bar("converting"),
    )
    print_convert_summary(result)
    console.print(f"[bold]3/3[/bold] ptxseg split {dataset} --folds {folds}")
    console.print(fold_summary(split_dataset(dataset, folds=folds, seed=seed)).to_string())
    console.print(
        f"\nDataset ready at {dataset} (manifest.csv, folds.csv). These are synthetic phantoms: "
        "they exercise the pipeline and say nothing about patients."
    )
    return 0
