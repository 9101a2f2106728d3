"""``ptxseg demo``: the main job on its built-in default, on a machine with no data and no internet.

Synthesise phantom chest radiographs as a SIIM-shaped source tree (DICOM +
RLE CSV, with a patient-level test split), ingest them through the real
conversion path, split the training images into folds, train the CPU default
recipe for a fixed number of seeded epochs (the same numbers however fast or busy the machine;
only the time differs), tune its operating point on the validation fold,
evaluate it with TTA on the held-out test split, write the HTML report, train
the phase-I lung-field model on the phantoms (``DIR/lungs_phantom``: not beside the
pneumothorax model, so that nothing applies it to real films unasked) and run
``ptxseg predict`` on test DICOMs with it (JSON, overlay, DICOM SEG); then, when
``../shared/data`` exists, show the lung-field model that ships with ptxseg on real
radiographs (``ptxseg lungs``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.cli.data import print_convert_summary
from ptxseg.cli.synth import print_synth_summary
from ptxseg.cli.train import epoch_line
from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.split import fold_summary, split_dataset
from ptxseg.progress import EpochBars, console, progress_bar
from ptxseg.synth.dataset import synth_dataset

NOTE = "These are synthetic phantoms: the numbers show the pipeline works end to end, not how a model does on patients."


@dataclass(frozen=True)
class _Plan:
    """The demo's sizes: phantoms, image side, folds, epochs; ``quick`` trains one step per model."""

    out: Path
    n: int
    size: int
    folds: int
    epochs: int
    lung_epochs: int
    seed: int
    quick: bool

    @property
    def budget(self) -> float | None:
        return 0.0 if self.quick else None  # a zero budget stops after the first step; else fixed epochs, no wall clock


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its data, model and report.")] = Path("demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes and a one-step training, for smoke tests.")] = False,
    epochs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Pneumothorax training epochs (seeded, no wall clock: numbers independent of the machine's speed; ≈ 8 s each here).",
        ),
    ] = 30,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Synthesise a SIIM-shaped phantom set, ingest and split it, train, tune, evaluate on the test split, report."""
    t0 = time.monotonic()
    n, size, folds = (32, 64, 3) if quick else (240, 128, 5)
    plan = _Plan(out=out, n=n, size=size, folds=folds, epochs=epochs, lung_epochs=4, seed=seed, quick=quick)
    source, dataset, per_fold = _data_steps(plan)
    bars = EpochBars(quiet=quick)

    def on_epoch(r: dict) -> None:
        bars.close()
        console.print(f"  epoch {r['epoch'] + 1}: {epoch_line(r)}", highlight=False)

    run, trained = _train_step(plan, dataset, bars, on_epoch)
    tuned, ev, test_ids, page = _assess_steps(plan, dataset, run)
    lung_run, lungs = _lung_step(plan, dataset, bars, on_epoch)
    table = _predict_step(plan, source, run, lung_run)
    real_lungs = shipped_lungs_on_real(out / "lungs_real", quick)
    real_ptx = shipped_default_on_real()
    m = ev.metrics
    write_record(
        out / "demo.json",
        seconds=time.monotonic() - t0,
        phantoms=n,
        size=size,
        fold_images=[int(v) for v in per_fold["images"]],
        train=trained,
        tuned={"operating_point": tuned.best.to_dict(), "dice": tuned.best_dice},
        test=m,
        lungs=lungs,
        predictions=table,
        real_lungs=real_lungs,
    )
    console.print(
        f"\n[bold]SIIM mean Dice {m['mean_dice']:.4f}[/bold] (95% CI {m['ci95']['mean_dice'][0]:.3f}–{m['ci95']['mean_dice'][1]:.3f}),"
        f" case sensitivity {m['case_sensitivity']:.3f}, specificity {m['case_specificity']:.3f}"
        f" on {len(test_ids)} held-out test phantoms; {time.monotonic() - t0:.0f} s in all.\n"
        f"Model: {run}   Report: {page}\nPhantom lung-field model: {lung_run} (for phantoms; on real films `ptxseg predict`"
        " uses the real one that ships with ptxseg)\n"
        f"Clinical outputs (JSON, overlay, DICOM SEG, summary.csv): {out / 'predictions'}\n{NOTE}"
        + (f"\nShipped lung-field model on real radiographs: {real_lungs}" if real_lungs else "")
        + f"\n{real_ptx}",
        highlight=False,
    )


def _data_steps(plan: _Plan):
    """Steps 1–3: synthesise the SIIM-shaped source, convert it, split it; (source, dataset, images per fold)."""
    n, size, out = plan.n, plan.size, plan.out
    source = out / "source"
    console.print(f"[bold]1/11[/bold] ptxseg synth {source} -n {n} --size {size} --layout kaggle --test-fraction 0.2")
    rows = synth_dataset(
        source, n, size=size, seed=plan.seed, layout="kaggle", workers=2, progress=progress_bar("synthesising"), test_fraction=0.2
    )
    print_synth_summary(rows, source, "kaggle")
    dataset = out / "dataset"
    console.print(f"[bold]2/11[/bold] ptxseg convert {source} {dataset} --rle-size {size} --size {size}")
    result = convert_dataset(
        source, dataset, rle_shape=(size, size), options=ConvertOptions(size=size), workers=2, progress=progress_bar("converting")
    )
    print_convert_summary(result)
    console.print(f"[bold]3/11[/bold] ptxseg split {dataset} --folds {plan.folds}")
    per_fold = fold_summary(split_dataset(dataset, folds=plan.folds, seed=plan.seed))
    console.print(per_fold.to_string())
    return source, dataset, per_fold


def _train_step(plan: _Plan, dataset: Path, bars: EpochBars, on_epoch):
    """Step 4: train the CPU default recipe; (run directory, TrainResult)."""
    from ptxseg.config import load_config
    from ptxseg.train.engine import train

    run = plan.out / "model"
    sets = [f"data.size={plan.size}", "data.workers=0", f"training.epochs={plan.epochs}"] + (
        ["model.encoder=resnet18", "training.batch_size=4"] if plan.quick else []
    )
    console.print(f"[bold]4/11[/bold] ptxseg train --data {dataset} --out {run} " + " ".join(f"--set {s}" for s in sets))
    with bars:
        trained = train(load_config("default", sets), dataset, run, minutes=plan.budget, on_epoch=on_epoch, on_batch=bars)
    console.print(
        f"  {trained.epochs_run} epochs ({trained.stop_reason}); chosen epoch {trained.best_epoch + 1}: validation Dice "
        f"{trained.select_dice:.4f} at its tuned point ({trained.best_dice:.4f} at the configured one)",
        highlight=False,
    )
    return run, trained


def _assess_steps(plan: _Plan, dataset: Path, run: Path):
    """Steps 5–7: tune the operating point, evaluate the test split with TTA, write the report."""
    from ptxseg.cli.evaluate import print_metrics
    from ptxseg.cli.tune import print_tables
    from ptxseg.infer.predictor import Predictor
    from ptxseg.tasks.evaluate import dataset_ids, evaluate_model
    from ptxseg.tasks.report import report_model
    from ptxseg.tasks.tune import tune_model

    console.print(f"[bold]5/11[/bold] ptxseg tune {run}")
    tuned = tune_model(run, progress=progress_bar("predicting")).result
    print_tables(tuned)
    console.print(f"  operating point: {tuned.best.to_dict()} (validation Dice {tuned.best_dice:.4f})", highlight=False)

    console.print(f"[bold]6/11[/bold] ptxseg evaluate --model {run} --data {dataset} --split test")
    predictor = Predictor([run])
    test_ids = dataset_ids(dataset, split="test")
    ev = evaluate_model(predictor, dataset, test_ids, progress=progress_bar("predicting"))
    print_metrics(ev.metrics, f"held-out test split ({len(test_ids)} phantoms, TTA {'+'.join(predictor.tta)})")
    evaluation = {**ev.metrics, "per_image_dice": dict(zip(ev.ids, map(float, ev.dice), strict=True)), "note": NOTE}

    console.print(f"[bold]7/11[/bold] ptxseg report → {plan.out / 'report'}")
    with console.status("writing the report (case figures, curves) …"):
        page = report_model([run], dataset, test_ids, plan.out / "report", evaluation, note=NOTE)
    return tuned, ev, test_ids, page


def _lung_step(plan: _Plan, dataset: Path, bars: EpochBars, on_epoch):
    """Step 8: the phase-I lung-field model on the phantoms, kept apart from the pneumothorax model."""
    from ptxseg.config import load_config
    from ptxseg.train.engine import train

    lung_run = plan.out / "lungs_phantom"  # not MODEL/lungs: a phantom lung model is for phantoms only
    console.print(f"[bold]8/11[/bold] ptxseg train lungs_unet_r34_256 --data {dataset} --out {lung_run}")
    lung_sets = [f"data.size={plan.size}", "data.workers=0", "model.encoder=resnet18", f"training.epochs={plan.lung_epochs}"] + (
        ["training.batch_size=4"] if plan.quick else []
    )
    with bars:
        lung_cfg = load_config("lungs_unet_r34_256", lung_sets)
        lungs = train(lung_cfg, dataset, lung_run, minutes=plan.budget, on_epoch=on_epoch, on_batch=bars)
    console.print(f"  {lungs.epochs_run} epochs ({lungs.stop_reason}), lung-field validation Dice {lungs.select_dice:.4f}")
    return lung_run, lungs


def _predict_step(plan: _Plan, source: Path, run: Path, lung_run: Path):
    """Step 9: ``ptxseg predict`` on test DICOMs with both models (JSON, overlay, DICOM SEG); the summary table."""
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.tasks.predict import predict_batch

    out = plan.out
    dicoms = sorted((source / "dicom-images-test").rglob("*.dcm"))[: 4 if plan.quick else 8]
    console.print(
        f"[bold]9/11[/bold] ptxseg predict {run} <{len(dicoms)} test DICOMs> --lungs {lung_run} --seg --out {out / 'predictions'}"
    )
    pipeline = ClinicalPipeline(run, lungs=lung_run)
    table = predict_batch(pipeline, dicoms, out / "predictions", seg=True, progress=progress_bar("predicting"))
    shown = table[["id", "present", "probability", "max_severity", "ratio_right_pct", "ratio_left_pct"]].head(8)
    console.print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"), highlight=False)
    return table


def write_record(path: Path, *, train, lungs, predictions, real_lungs: Path | None, **numbers) -> None:
    """``OUT/demo.json``: every number the demo printed, which ``scripts/demo_numbers.py`` writes into docs/demo.md."""
    from ptxseg.io.atomic import write_text_atomic
    from ptxseg.io.jsonfile import dumps

    def run(result) -> dict:
        keys = ("epochs_run", "stop_reason", "select_by", "select_dice", "best_dice")
        return {k: getattr(result, k) for k in keys} | {"chosen_epoch": result.best_epoch + 1}

    columns = ["id", "present", "probability", "ratio_right_pct", "ratio_left_pct", "max_severity"]
    real = None
    if real_lungs is not None:
        import pandas as pd

        table = pd.read_csv(real_lungs / "summary.csv")
        real = {"films": len(table), "eligible": int((table["triage_eligible"] == True).sum()), "qc": list(table["qc"])}  # noqa: E712
    record = {
        "format": "ptxseg-demo/1",
        **numbers,
        "train": run(train),
        "lungs": run(lungs),
        "predictions": predictions[columns].to_dict("records"),
        "real_lungs": real,
    }
    write_text_atomic(path, dumps(record, indent=2))


#: real radiographs shown to the shipped lung model when ../shared/data exists beside the working folder
REAL_EXAMPLES = ("dicom/chest_pa_cr_mono1.dcm", "lungs/lungs/CHNCXR_0001_0.png", "siim/real_sample")


def shipped_lungs_on_real(out: Path, quick: bool) -> Path | None:
    """Step 10: the lung-field model that ships with ptxseg on real radiographs from ``../shared/data`` (when that
    folder and the shipped model exist): label maps, areas and the quality gate; returns the output folder."""
    from ptxseg.artifacts.shipped import shipped_lung_model
    from ptxseg.clinical.inputs import gather_inputs
    from ptxseg.tasks.lungs import LungSegmenter, segment_lungs_batch

    shared = Path.cwd().parent / "shared" / "data"
    model = shipped_lung_model()
    if not shared.is_dir() or model is None:
        why = "no ../shared/data here" if not shared.is_dir() else "no shipped lung model in this installation"
        console.print(f"[bold]10/11[/bold] shipped lung-field model on real radiographs: skipped ({why})")
        return None
    inputs = gather_inputs([shared / p for p in REAL_EXAMPLES if (shared / p).exists()])[: 3 if quick else 8]
    console.print(f"[bold]10/11[/bold] ptxseg lungs <{len(inputs)} real radiographs from {shared}> --out {out}")
    table = segment_lungs_batch(LungSegmenter(model), inputs, out, progress=progress_bar("segmenting lungs"))
    shown = table[["id", "status", "right_area_px", "left_area_px", "triage_eligible", "qc"]]
    console.print(shown.to_string(index=False), highlight=False)
    return out


def shipped_default_on_real() -> str:
    """Step 11: the real-SIIM pneumothorax model — while none passes its bar, why none ships (the honest result);
    returns the line for the summary."""
    from ptxseg.artifacts.shipped import WITHHELD, shipped_path

    line = WITHHELD["default"] if shipped_path("default") is None else "ships: run `ptxseg predict default FILM...`"
    console.print(f"[bold]11/11[/bold] ptxseg predict default <real SIIM films>: {line}", highlight=False)
    return f"Real pneumothorax model: {line}."
