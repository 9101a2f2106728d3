"""``ptxseg export``: a run directory or an ensemble file → an ONNX Runtime bundle (fp32 or INT8)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.progress import console, err_console, progress_bar


@app.command("export")
def export_command(
    source: Annotated[Path, typer.Argument(help="Run directory, weights file or ensemble file to export.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (an existing bundle there is replaced).")],
    int8: Annotated[bool, typer.Option("--int8", help="Quantise to INT8 (static QDQ); needs --calib.")] = False,
    calib: Annotated[
        Path | None,
        typer.Option("--calib", help="Dataset: calibration images (training folds) and the validation fold for the Dice check."),
    ] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Validation fold of --calib (default: the model's).")] = None,
    lungs: Annotated[
        Path | None, typer.Option("--lungs", help="Lung-field model to bundle (default: none: predict and serve use the shipped one).")
    ] = None,
    no_lungs: Annotated[bool, typer.Option("--no-lungs", help="Do not include a lung-field model.")] = False,
    calib_images: Annotated[int, typer.Option("--calib-images", min=1, help="Calibration images.")] = 64,
    eval_images: Annotated[
        int | None, typer.Option("--eval-images", min=1, help="Validation images for the fp32/INT8 Dice (default: the whole fold).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--int8-tolerance", help="Largest validation Dice INT8 may lose; a worse INT8 bundle is refused.")
    ] = 0.005,
    method: Annotated[str, typer.Option("--calib-method", help="Calibration: minmax, percentile or entropy.")] = "minmax",
    card_notes: Annotated[
        Path | None, typer.Option("--card-notes", help="Markdown appended to MODEL_CARD.md (measured results, the data's terms).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write a deployable bundle: ONNX models verified against PyTorch, model cards, MODEL_CARD.md, sha256 of every file."""
    from ptxseg.deploy.export import export_bundle
    from ptxseg.errors import PtxsegError

    if no_lungs and lungs is not None:
        raise PtxsegError("--lungs", "give --lungs or --no-lungs, not both")
    from ptxseg.artifacts.shipped import unused_lung_model

    result = export_bundle(
        source,
        out,
        int8=int8,
        calib=calib,
        fold=fold,
        lungs=False if no_lungs else lungs,
        calib_images=calib_images,
        eval_images=eval_images,
        tolerance=tolerance,
        method=method,
        progress=progress_bar("measuring Dice", quiet),
        card_notes=card_notes,
    )
    console.print(
        f"bundle {result.out}: {result.members} model(s), {result.precision}, ONNX vs PyTorch max relative difference "
        f"{result.verification:.1e}",
        highlight=False,
    )
    if lungs is None and not no_lungs and (unused := unused_lung_model(source)) is not None:
        err_console.print(
            f"note: {unused} is not bundled unless named (--lungs {unused}); predict and serve will use the shipped"
            " real lung-field model",
            highlight=False,
        )
    q = result.quantization
    if q:
        console.print(
            f"INT8: validation SIIM mean Dice {q['dice_int8']:.4f} vs fp32 {q['dice_fp32']:.4f} on {q['eval_images']} images "
            f"(change {q['dice_int8'] - q['dice_fp32']:+.4f}, tolerance {q['tolerance']})",
            highlight=False,
        )
    if result.lungs is not None:
        console.print(f"lung-field model: {result.lungs.out} ({result.lungs.precision})", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
