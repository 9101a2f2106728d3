"""End-to-end ``ptxseg predict`` latency per radiograph: real 1024² SIIM DICOMs, a 512² pneumothorax model and a 256²
lung-field model, writing the JSON, the overlay and the DICOM SEG — PyTorch, ONNX Runtime fp32 and INT8 side by side.

For each backend the same inputs go through the same code as ``ptxseg predict`` (read and decode the DICOM, the
clinical pipeline, the writers), one after another, and each input's wall time is recorded: p50 and p95 over
``--inputs`` DICOMs, and where the time goes (the pipeline's own phase timings, plus reading). Models are random
U-Net-ResNet-34s unless ``--model`` / ``--lungs`` give trained run directories (speed does not depend on weights);
INT8 calibration uses phantom images.

    .venv/bin/python benchmarks/predict_latency.py [--inputs 50] [--threads 2] [--tta identity]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _random_run(folder: Path, size: int, target: str, stored: int, tta: list[str]) -> Path:
    from ptxseg.artifacts.card import Architecture, ModelCard
    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.data.preprocess import Preprocessing
    from ptxseg.models import create_model

    torch.manual_seed(0)
    card = ModelCard(
        model=Architecture(name="unet", encoder="resnet34"),
        preprocessing=Preprocessing(stored_size=stored, size=size),
        target=target,
        tta=tta,
        training_data={"dataset": str(folder / "calib"), "fold": 0},
    )
    save_weights(folder / target / "best.safetensors", create_model("unet", encoder="resnet34"), card)
    return folder / target


def _bundles(folder: Path, model: Path | None, lungs: Path | None, tta: list[str]) -> dict[str, Path]:
    from ptxseg.data.split import split_dataset
    from ptxseg.deploy.export import export_bundle
    from ptxseg.synth.dataset import synth_dataset

    calib = folder / "calib"
    synth_dataset(calib, 24, size=1024, seed=5, positive_fraction=0.5)
    split_dataset(calib, folds=3)
    model = model or _random_run(folder, 512, "pneumothorax", 1024, tta)
    lungs = lungs or _random_run(folder, 256, "lungs", 1024, ["identity"])
    run = folder / "torch"
    run.mkdir()
    (run / "best.safetensors").symlink_to((model / "best.safetensors").resolve())
    (run / "best.json").symlink_to((model / "best.json").resolve())
    (run / "lungs").symlink_to(lungs.resolve())
    out = {"pytorch": run}
    for precision in ("fp32", "int8"):
        out[f"onnxruntime {precision}"] = export_bundle(
            run, folder / precision, int8=precision == "int8", calib=calib, calib_images=16, eval_images=4, tolerance=1.0
        ).out
    return out


def measure(model: Path, inputs: list[Path], out: Path, threads: int) -> tuple[list[float], dict[str, list[float]]]:
    from ptxseg.clinical.inputs import load_radiograph
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.tasks.predict import write_outputs

    pipeline = ClinicalPipeline(model, threads=threads)
    assert pipeline.lungs is not None
    walls, phases = [], {}
    for k, path in enumerate(inputs):
        t0 = time.perf_counter()
        rad = load_radiograph(path)
        t_read = time.perf_counter() - t0
        doc, _ = write_outputs(pipeline, rad, f"in{k}", out, seg=True, overlay=True)
        walls.append(time.perf_counter() - t0)
        for key, value in {**doc["timings_s"], "read_s": t_read}.items():
            phases.setdefault(key, []).append(value)
    return walls, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tta", nargs="+", default=["identity"])
    ap.add_argument("--model", type=Path, help="trained pneumothorax run directory (512²)")
    ap.add_argument("--lungs", type=Path, help="trained lung-field run directory")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = SHARED / "siim" / "unlabeled_dicom"
    inputs = sorted(folder.glob("*.dcm"))[: args.inputs]
    if not inputs:
        raise SystemExit(f"no DICOMs in {folder}")
    print(
        f"{len(inputs)} real SIIM DICOMs (1024², JPEG), {args.threads} threads, TTA {'+'.join(args.tta)}, outputs JSON + overlay + SEG"
    )
    with tempfile.TemporaryDirectory() as tmp:
        bundles = _bundles(Path(tmp), args.model, args.lungs, args.tta)
        base = None
        print(f"{'backend':<20} {'p50 s':>7} {'p95 s':>7} {'mean s':>7} {'vs pytorch':>11}   mean per phase (s)")
        for name, model in bundles.items():
            out = Path(tmp) / f"out-{name.replace(' ', '-')}"
            measure(model, inputs[:2], out, args.threads)  # warm-up: sessions, caches, first-call allocations
            walls, phases = measure(model, inputs, out, args.threads)
            p50, p95 = np.percentile(walls, 50), np.percentile(walls, 95)
            base = base or p50
            detail = ", ".join(f"{k.removesuffix('_s')} {statistics.mean(v):.3f}" for k, v in phases.items() if k != "total_s")
            print(f"{name:<20} {p50:>7.3f} {p95:>7.3f} {statistics.mean(walls):>7.3f} {base / p50:>10.2f}×   {detail}", flush=True)


if __name__ == "__main__":
    main()
