"""How long the full operating-point grid of ``ptxseg tune`` takes, and how much the one-pass search saves.

Probability maps are generated on the fly (smooth random fields, a fifth of
them with a confident lesion and its truth), streamed into
:func:`ptxseg.measure.gridsearch.collect` and searched with :func:`ptxseg.measure.gridsearch.search`: the
whole grid (13 thresholds × 5 component sizes × 6 minimum sizes + 300
triplets). Side by side on the first ``--naive`` images, the naive way —
:func:`ptxseg.measure.operating_point.apply_operating_point` for every grid point and
image — gives the same best Dice, and the ratio of the two times is printed.
Then the full grid over ``--images`` maps runs in one process and in
``--workers`` processes, and the speed-up is printed.

    .venv/bin/python benchmarks/tune_grid.py [--images 1000] [--size 1024] [--naive 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import time

import cv2
import numpy as np

from ptxseg.measure.gridsearch import (
    BOTTOM_THRESHOLDS,
    COMPONENT_PX,
    MIN_MASK_PX,
    THRESHOLDS,
    TOP_MIN_PX,
    TOP_THRESHOLDS,
    collect,
    search,
)
from ptxseg.measure.metrics import dice_per_image
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point


def make_pair(i: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    low = cv2.resize(rng.random((size // 32, size // 32)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    prob = np.clip(low * 0.5, 0, 1)
    truth = np.zeros((size, size), np.uint8)
    if i % 5 == 0:
        r, c = rng.integers(size // 8, size // 2, 2)
        cv2.ellipse(truth, (int(c), int(r)), (size // 16, size // 8), 0, 0, 360, 1, -1)
        prob = np.maximum(prob, cv2.GaussianBlur(truth.astype(np.float32), (0, 0), size / 128) * 0.95)
    return prob, truth


def naive(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    probs = np.stack([p for p, _ in pairs])
    truths = np.stack([t for _, t in pairs])
    points = [OperatingPoint(t, c, m) for t, c, m in itertools.product(THRESHOLDS, COMPONENT_PX, MIN_MASK_PX)]
    points += [
        OperatingPoint(b, c, 0, 1024, tt, a)
        for b, c, tt, a in itertools.product(BOTTOM_THRESHOLDS, COMPONENT_PX, TOP_THRESHOLDS, TOP_MIN_PX)
    ]
    return max(float(dice_per_image(apply_operating_point(probs, op), truths).mean()) for op in points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--naive", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="processes for the parallel run (side by side with one)")
    args = ap.parse_args()

    sub = [make_pair(i, args.size) for i in range(args.naive)]
    t0 = time.perf_counter()
    fast = search(collect(iter(sub))).best_dice
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive(sub)
    t_slow = time.perf_counter() - t0
    print(
        f"{args.naive} maps at {args.size}²: one-pass search {t_fast:.2f} s, naive apply per grid point {t_slow:.2f} s "
        f"→ {t_slow / t_fast:.0f}× faster; best Dice {fast:.6f} vs {slow:.6f}"
    )

    # the full grid on the same maps, one process and then --workers processes; maps are pre-generated
    # into memory (in windows) so their generation is excluded from both timings
    pairs = [make_pair(i, args.size) for i in range(args.images)]
    timings = {}
    for workers in sorted({1, args.workers}):
        t0 = time.perf_counter()
        stats = collect(iter(pairs), workers=workers)
        t_collect = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = search(stats)
        t_search = time.perf_counter() - t0
        timings[workers] = t_collect + t_search
        print(
            f"full grid over {args.images} maps at {args.size}², {workers} process(es): {t_collect + t_search:.1f} s "
            f"(per-map statistics {t_collect:.1f} s, grid scoring {t_search:.2f} s); best {result.family} Dice {result.best_dice:.4f}"
        )
    if len(timings) > 1:
        print(f"{args.workers} workers vs 1: {timings[1] / timings[args.workers]:.2f}× faster")


if __name__ == "__main__":
    main()
