"""``ptxseg predict``: clinical outputs for radiographs — mask, side, ratio and severity, overlay, DICOM SEG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import console, err_console, progress_bar


@app.command("predict")
def predict_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Pneumothorax model: `default` (shipped: trained on real SIIM films), a run directory, bundle or ensemble file."
        ),
    ],
    inputs: Annotated[list[Path], typer.Argument(help="DICOM/PNG/JPEG files, folders (recursive) or list files (.txt).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("predictions"),
    lungs: Annotated[
        Path | None,
        typer.Option(
            "--lungs",
            help="Lung-field model: `lungs` (shipped, trained on real radiographs; the default), a run directory or bundle."
            " A bundle exported with --lungs uses its own; a run directory's lungs/ is used only when named here.",
        ),
    ] = None,
    no_lungs: Annotated[bool, typer.Option("--no-lungs", help="Skip phase I (sides and ratios stay null).")] = False,
    tta: Annotated[list[str] | None, typer.Option("--tta", help="TTA transforms (default: the model's).")] = None,
    seg: Annotated[bool, typer.Option("--seg", help="Also write a DICOM SEG (DICOM inputs) at the source resolution.")] = False,
    overlay: Annotated[bool, typer.Option("--overlay/--no-overlay", help="Write <id>_overlay.png.")] = True,
    mc_dropout: Annotated[
        int, typer.Option("--mc-dropout", min=0, help="Monte-Carlo dropout passes per TTA member (models with dropout).")
    ] = 0,
    cam: Annotated[bool, typer.Option("--cam", help="Also write <id>_cam.png, a Grad-CAM heat map of the decision.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Also print each result's JSON on stdout (one line each).")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Threads reading and decoding inputs ahead.")] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="ONNX Runtime threads for a bundle (default: one per core).")
    ] = None,
    mild_below: Annotated[float, typer.Option(help="Severity: ratio (%) below which a pneumothorax is mild.")] = 20.0,
    severe_above: Annotated[float, typer.Option(help="Severity: ratio (%) above which it is severe.")] = 40.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on a Ray cluster: `local` (start one here), `auto` (the one running here) or HOST:PORT of its head;"
            " OUT must be a folder every node reaches (docs/scale.md).",
        ),
    ] = None,
    actors: Annotated[int | None, typer.Option("--actors", min=1, help="With --ray: actors (default: one per CPU).")] = None,
    cpus_per_actor: Annotated[float, typer.Option("--cpus-per-actor", help="With --ray: CPUs per actor.")] = 1.0,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", help="With --ray: GPUs per actor.")] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="With --ray: inputs per actor call.")] = 4,
) -> None:
    """Is there a pneumothorax, where, on which side, how big relative to that lung, how sure — per image, plus summary.csv."""
    from ptxseg.artifacts.shipped import unused_lung_model
    from ptxseg.clinical.inputs import gather_inputs
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.io.atomic import prepare_output_dir
    from ptxseg.io.jsonfile import dumps
    from ptxseg.tasks.predict import predict_batch

    if not 0 < mild_below < severe_above:
        raise PtxsegError("--mild-below/--severe-above", f"need 0 < {mild_below} < {severe_above}")
    if no_lungs and lungs is not None:
        raise PtxsegError("--lungs", "give --lungs or --no-lungs, not both")
    paths = gather_inputs(inputs, exclude=out)
    if not paths:
        raise PtxsegError(", ".join(map(str, inputs)), "no DICOM, PNG or JPEG inputs found")
    pipeline = ClinicalPipeline(
        model, False if no_lungs else lungs, tta, bounds=(mild_below, severe_above), mc_dropout=mc_dropout, threads=threads
    )
    prepare_output_dir(out, "--out")  # after the models load: a typo in MODEL leaves no empty --out behind
    if mc_dropout and not pipeline.ptx.uses_mc_dropout:
        err_console.print("note: --mc-dropout ignored: the model has no dropout to sample", highlight=False)
    if pipeline.lungs is None:
        err_console.print(f"note: {pipeline.lung_reason}; per-side values will be null", highlight=False)
    elif lungs is None and (unused := unused_lung_model(pipeline.model_path)) is not None:
        used = pipeline.lung_info["path"]
        err_console.print(f"note: {unused} is not used unless named (--lungs {unused}); lung fields: {used}", highlight=False)
    for warning in pipeline.warnings:
        err_console.print(f"[bold red]warning:[/] {warning}", highlight=False)
    t0 = time.monotonic()
    on_result = (lambda doc: print(dumps(doc), flush=True)) if json_out else None
    bar = progress_bar("predicting", quiet or json_out)
    if ray is not None:
        from ptxseg.cluster.ray_predict import RaySettings

        layout = RaySettings(address=ray, actors=actors, cpus=cpus_per_actor, gpus=gpus_per_actor, batch_size=batch_size)
        options = {"lungs": False if no_lungs else lungs, "tta": tta, "bounds": (mild_below, severe_above)}
        options |= {"mc_dropout": mc_dropout, "threads": threads}
        table = _on_ray(model, paths, out, layout, options, (seg, overlay, cam), bar, on_result)
    else:
        table = predict_batch(pipeline, paths, out, seg, overlay, workers, bar, on_result, cam)
    elapsed = time.monotonic() - t0
    counts = table["status"].value_counts().to_dict()
    done = counts.get("ok", 0)
    summary = (
        f"{len(table)} inputs: {done} predicted, {counts.get('skipped', 0)} already complete, {counts.get('error', 0)} failed"
        f" in {elapsed:.1f} s ({done / elapsed if elapsed > 0 else 0:.2f} images/s); flagged: {int((table['present'] == True).sum())}"  # noqa: E712
        f"; summary: {out / 'summary.csv'}"
    )
    (err_console if json_out else console).print(summary, highlight=False)
    for _, row in table[table["status"] == "error"].iterrows():
        err_console.print(f"{row['input']}: {row['reason']}", highlight=False)
    if counts.get("error", 0):
        raise typer.Exit(1)


def _on_ray(model, paths, out, layout, options, outputs, bar, on_result):
    """``--ray``: the batch on a Ray cluster (:func:`ptxseg.cluster.ray_predict.predict_on_ray`); the summary table."""
    from ptxseg.cluster.ray_predict import predict_on_ray
    from ptxseg.io.jsonfile import read_json_object

    seg, overlay, cam = outputs
    run = predict_on_ray(model, paths, out, layout, pipeline=options, seg=seg, overlay=overlay, cam=cam, progress=bar)
    err_console.print(f"Ray: {len(run.nodes)} node(s) ran the actors ({', '.join(run.nodes)})", highlight=False)
    if on_result is not None:  # the actors wrote the documents: print them as the local run does
        for image_id in run.table.loc[run.table["status"] == "ok", "id"]:
            on_result(read_json_object(out / f"{image_id}.json"))
    return run.table
