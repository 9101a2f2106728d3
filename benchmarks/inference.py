"""Inference speed of U-Net-ResNet-34 on this machine, every backend side by side in one run, and the INT8 Dice change.

For each size (256², 512², 1024²) and batch (1, 4): PyTorch eager fp32, channels-last, ``torch.compile`` (where it
works here), ONNX Runtime fp32 and ONNX Runtime INT8 (static QDQ, calibrated on phantom network inputs). Each is
timed after warm-up on the same inputs: images/s, p50/p95 latency per call, and the ratio of images/s to eager fp32
measured in the same run. The weights are random (speed does not depend on them).

With ``--run RUN_DIR --data DATASET`` the INT8 Dice change of a *trained* model is also measured: the model is
exported fp32 and INT8 (calibrated on its training folds) and both are scored on its validation fold (SIIM mean Dice).

    .venv/bin/python benchmarks/inference.py [--sizes 256 512 1024] [--batches 1 4] [--repeats 10] [--threads 2]
    .venv/bin/python benchmarks/inference.py --sizes 512 --run runs/unet512 --data phantoms512
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptxseg.deploy.export import quantize_int8
from ptxseg.models import create_model
from ptxseg.models.export import export_onnx


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def phantom_inputs(size: int, n: int) -> list[np.ndarray]:
    """Network inputs of phantom radiographs (letterboxed, min-max, (x − 0.5) / 0.5): calibration data for INT8."""
    from ptxseg.data.preprocess import Preprocessing
    from ptxseg.synth.phantom import make_phantom

    pp = Preprocessing(stored_size=size, size=size)
    out = []
    for k in range(n):
        image = make_phantom(seed=1000, index=k, size=size, positive=k % 2 == 0).image
        out.append(pp.network_input(image)[0][None, None])
    return out


def backends(size: int, threads: int, compile_ok: bool, folder: Path):
    torch.manual_seed(0)
    model = create_model("unet", encoder="resnet34").eval()
    onnx = folder / f"u{size}.onnx"
    export_onnx(model, onnx, size=size)
    int8 = folder / f"u{size}.int8.onnx"
    quantize_int8(onnx, int8, phantom_inputs(size, 16))
    cl = create_model("unet", encoder="resnet34").eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(model.state_dict())
    yield "pytorch eager fp32", lambda x: model(torch.from_numpy(x))
    yield "pytorch channels-last", lambda x: cl(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    if compile_ok:
        try:
            compiled = torch.compile(model)
            with torch.no_grad():
                compiled(torch.zeros(1, 1, size, size))
            yield "pytorch torch.compile", lambda x: compiled(torch.from_numpy(x))
        except Exception as exc:  # noqa: BLE001 - inductor needs a compiler toolchain; report and go on
            print(f"  torch.compile unavailable here: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    s32, s8 = session(onnx, threads), session(int8, threads)
    yield "onnxruntime fp32", lambda x: s32.run(None, {"image": x})
    yield "onnxruntime int8", lambda x: s8.run(None, {"image": x})


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({args.threads} threads), U-Net/ResNet-34, {args.repeats} timed calls after 2 warm-up calls")
    print(f"{'size':>5} {'batch':>5} {'backend':<24} {'images/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'vs eager':>9}")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for size in args.sizes:
            runs = list(backends(size, args.threads, not args.no_compile, Path(tmp)))
            for batch in args.batches:
                x = np.random.default_rng(size + batch).standard_normal((batch, 1, size, size)).astype(np.float32)
                base = None
                for name, fn in runs:
                    times = timed(lambda fn=fn, x=x: fn(x), args.repeats)
                    ips = batch / statistics.mean(times)
                    base = base or ips
                    p50, p95 = np.percentile(times, 50) * 1e3, np.percentile(times, 95) * 1e3
                    print(f"{size:>5} {batch:>5} {name:<24} {ips:>9.2f} {p50:>9.1f} {p95:>9.1f} {ips / base:>8.2f}×", flush=True)


def dice_change(args) -> None:
    from ptxseg.deploy.export import export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = export_bundle(
            args.run,
            Path(tmp) / "b",
            int8=True,
            calib=args.data,
            lungs=False,
            tolerance=1.0,
            eval_images=args.eval_images,
            method=args.calib_method,
        )
        q = result.quantization
        print(
            f"INT8 vs fp32 on {q['eval_images']} validation images of {args.data} (fold {q['fold']},"
            f" {q['calibration_images']} calibration images, {q['method']}): SIIM mean Dice fp32 {q['dice_fp32']:.4f},"
            f" INT8 {q['dice_int8']:.4f},"
            f" change {q['dice_int8'] - q['dice_fp32']:+.4f} ({time.perf_counter() - t0:.0f} s)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--run", type=Path, help="a trained run directory: also measure its INT8 Dice change")
    ap.add_argument("--data", type=Path, help="with --run: its dataset (calibration folds and validation fold)")
    ap.add_argument("--eval-images", type=int, default=None)
    ap.add_argument("--calib-method", choices=["minmax", "percentile", "entropy"], default="minmax")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    if not args.skip_speed:
        speed(args)
    if args.run is not None:
        dice_change(args)


if __name__ == "__main__":
    main()
