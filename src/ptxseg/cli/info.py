"""``ptxseg info``: what ptxseg reads from each file, and its QC verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.data.qc import inspect_file
from ptxseg.progress import console


def _print_report(report: dict) -> None:
    colour = {"ok": "green", "warning": "yellow", "refused": "red"}[report["verdict"]]
    console.print(f"[bold]{report['file']}[/bold]", highlight=False)
    if report["verdict"] == "refused":
        console.print(f"  verdict: [{colour}]refused[/{colour}] ({report['code']}): {report['reason']}", highlight=False)
        return
    extra = f" ({', '.join(report['warnings'])})" if report["warnings"] else ""
    console.print(f"  verdict: [{colour}]{report['verdict']}[/{colour}]{extra}", highlight=False)
    rows, cols = report["decoded_shape"]
    i = report["intensity"]
    console.print(f"  decoded: {rows} x {cols} (rows x cols), float32 display range [0, 1]", highlight=False)
    console.print(
        f"  intensity: min {i['min']:.4f}  p1 {i['p01']:.4f}  mean {i['mean']:.4f}  p99 {i['p99']:.4f}  max {i['max']:.4f}",
        highlight=False,
    )
    for key, value in report["metadata"].items():
        if key != "warnings":
            console.print(f"  {key}: {'-' if value is None else value}", highlight=False)


@app.command("info")
def info(
    files: Annotated[list[Path], typer.Argument(help="DICOM or image files (PNG, JPEG, TIFF, BMP).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")] = False,
    no_voi: Annotated[bool, typer.Option("--no-voi", help="Ignore the VOI LUT / window in the file.")] = False,
) -> int:
    """Print each file's metadata, decoded size, intensity range and QC verdict.

    Exit code 2 if any file is refused.
    """
    reports = [inspect_file(p, apply_voi=not no_voi) for p in files]
    if as_json:
        print(json.dumps(reports, indent=2))
    else:
        for report in reports:
            _print_report(report)
    refused = sum(r["verdict"] == "refused" for r in reports)
    if refused:
        typer.echo(f"ptxseg: error: {refused} of {len(reports)} file(s) refused", err=True)
        raise typer.Exit(2)
    return 0
