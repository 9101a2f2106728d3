"""What one small upload costs ``ptxseg serve``: seconds and memory per input size and format, with the service's
pixel limits and reduced decoding (after) and without them (before: the 64 MP general limit, full-size decoding),
side by side in one run.

    .venv/bin/python benchmarks/serve_amplification.py [--sizes 2048 4300 8000] [--model RUN]

Each case runs in a fresh process: the service is built (a random U-Net-ResNet-18 at 512², unless ``--model`` names
a run directory, and the shipped lung-field model), one synthetic radiograph is analysed to warm up, then the
upload — a smooth chest-like image of side × side pixels as an 8-bit PNG, a JPEG (quality 90) and a deflated
16-bit DICOM — goes through :meth:`InferenceService.analyse`. Printed per case: the upload's size, the answer's
status, wall seconds, resident memory after the warm-up, the peak (VmHWM) during the analysis and the ratio of
before to after. Speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_upload(kind: str, side: int, folder: Path) -> bytes:
    import cv2
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from ptxseg.io.dicom import write_dicom

    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    lungs = ((x - 0.3) ** 2 / 0.03 + (y - 0.5) ** 2 / 0.12 < 1) | ((x - 0.7) ** 2 / 0.03 + (y - 0.5) ** 2 / 0.12 < 1)
    image = 0.8 - 0.3 * y - 0.4 * lungs
    if kind == "dicom":
        path = write_dicom(folder / "up.dcm", np.round(image * 4000).astype(np.uint16), pixel_spacing=(0.15, 0.15))
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
        return path.read_bytes()
    ext, params = (".png", []) if kind == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imencode(ext, np.round(image * 255).astype(np.uint8), params)[1].tobytes()


def _random_run(folder: Path) -> Path:
    import torch

    from ptxseg.artifacts.card import Architecture, ModelCard
    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.data.preprocess import Preprocessing
    from ptxseg.models import create_model

    torch.manual_seed(0)
    card = ModelCard(model=Architecture(name="unet", encoder="resnet18"), preprocessing=Preprocessing(stored_size=512, size=512))
    return save_weights(folder / "run" / "best.safetensors", create_model("unet", encoder="resnet18"), card).parent


def one_case(kind: str, side: int, mode: str, model: str | None) -> dict:
    """Run in the child process: build the service, warm up, analyse one upload, measure."""
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.limits import DEFAULT_MAX_PIXELS
    from ptxseg.serve.service import InferenceService, PixelLimits
    from ptxseg.serve.store import ResultStore

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = Path(model) if model else _random_run(folder)
        limits = PixelLimits() if mode == "after" else PixelLimits(DEFAULT_MAX_PIXELS, 10**12, None)
        service = InferenceService(ClinicalPipeline(run), ResultStore(folder / "store", 10, 3600), limits=limits, timeout_s=600)
        service.warm_up()
        data = make_upload(kind, side, folder)
        rss = _rss_mb("VmRSS")
        # the peak so far is the warm-up's: reset it so VmHWM is this analysis's own (Linux: write 5 to clear_refs)
        Path("/proc/self/clear_refs").write_text("5")
        t0 = time.perf_counter()
        (answer,) = asyncio.run(service.analyse([(f"up.{kind}", data)]))
        seconds = time.perf_counter() - t0
        service.close()
        status = getattr(answer, "status", 200)
        return {"bytes": len(data), "status": status, "s": seconds, "rss_mb": rss, "peak_mb": _rss_mb("VmHWM")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4300, 8000])
    parser.add_argument("--kinds", nargs="+", default=["png", "jpeg", "dicom"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # internal: kind side mode
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case[0], int(args.case[1]), args.case[2], args.model)))
        return
    head = f"{'input':>14} {'upload':>9} | {'before: status':>14} {'s':>6} {'peak MB':>8} |"
    print(head + f" {'after: status':>13} {'s':>6} {'peak MB':>8} | {'time ×':>6} {'peak ×':>6}")
    for side in args.sizes:
        for kind in args.kinds:
            row = {}
            for mode in ("before", "after"):
                cmd = [sys.executable, __file__, "--case", kind, str(side), mode] + (["--model", args.model] if args.model else [])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                row[mode] = json.loads(out)
            b, a = row["before"], row["after"]
            grow_b, grow_a = b["peak_mb"] - b["rss_mb"], a["peak_mb"] - a["rss_mb"]
            print(
                f"{f'{side}² {kind}':>14} {b['bytes'] / 1e3:>7.0f}kB | {b['status']:>14} {b['s']:>6.2f} {grow_b:>+8.0f} |"
                f" {a['status']:>13} {a['s']:>6.2f} {grow_a:>+8.0f} | {b['s'] / a['s']:>6.1f} {grow_b / max(grow_a, 1):>6.1f}",
                flush=True,
            )
    print("peak MB: resident-memory peak during the analysis above the resident memory after the warm-up (VmHWM − VmRSS)")


if __name__ == "__main__":
    main()
