"""``ptxseg predict`` on this machine: the local pipeline vs a Ray Data actor pool of 1 and 2 actors, side by side.

    .venv/bin/python benchmarks/predict_ray.py MODEL [--n 40] [--images ../shared/data/siim/train_real/images]

Runs ``ptxseg predict MODEL <n real SIIM DICOMs> --seg`` three ways, each in a fresh process and a fresh output
folder: locally (``--workers 2`` read-ahead threads), and with ``--ray local --actors 1`` and ``--actors 2``
(Ray started in-process on loopback). Prints wall time, images/s and the ratio to the local run, and Ray's own
start-up (``ray.init`` to a running local cluster) measured on its own. On 2 cores the ratio is Ray's overhead;
on a cluster the actors add machines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim" / "train_real" / "images"
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _run(model: str, files: list[Path], out: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "ptxseg", "predict", model, *map(str, files), "--out", str(out), "--seg", "-q", *extra]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **LOOPBACK})
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'local'} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    return took


def _ray_startup() -> float:
    probe = (
        "import time, ray; t = time.monotonic(); "
        "ray.init(address='local', num_cpus=2, include_dashboard=False); print(time.monotonic() - t)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **LOOPBACK})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--images", type=Path, default=IMAGES)
    args = ap.parse_args()
    files = sorted(args.images.glob("*.dcm"))[: args.n]
    root = Path(tempfile.mkdtemp(prefix="ptxseg-bench-ray-"))
    runs = {
        "local (2 read-ahead threads)": ("--workers", "2"),
        "Ray, 1 actor": ("--ray", "local", "--actors", "1"),
        "Ray, 2 actors": ("--ray", "local", "--actors", "2"),
    }
    print(f"{len(files)} real SIIM DICOMs, --seg, {os.cpu_count()} CPU cores; each run a fresh process (model loading included)")
    base = None
    for k, (name, extra) in enumerate(runs.items()):
        took = _run(args.model, files, root / f"out{k}", *extra)
        base = base or took
        print(f"{name:30s} {took:7.1f} s  {len(files) / took:5.2f} images/s  {base / took:4.2f}× the local run")
    print(f"Ray start-up alone (ray.init of a local 2-CPU cluster): {_ray_startup():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
