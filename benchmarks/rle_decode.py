"""Decode the whole SIIM train-rle.csv: ptxseg's vectorised decoder vs the challenge's reference loop.

The reference is ``rle2mask`` from the challenge's ``mask_functions.py``
(reimplemented below as published: a Python loop over runs painting a float64
buffer, then transposed), applied row by row with the union taken per image.
Both sides decode every row of the file into per-image union masks and the
results are checked equal. Prints both times and their ratio.

    .venv/bin/python benchmarks/rle_decode.py [--csv PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import time
from pathlib import Path

import numpy as np

from ptxseg.io.rle import read_rle_csv

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim" / "train-rle.csv.gz"


def rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """The challenge's reference decoder (mask_functions.py), unchanged in substance."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle.split()])
    starts = array[0::2]
    lengths = array[1::2]
    current_position = 0
    for index, start in enumerate(starts):
        current_position += start
        mask[current_position : current_position + lengths[index]] = 255
        current_position += lengths[index]
    return mask.reshape(width, height)


def _rows(path: Path, limit: int | None) -> list[tuple[str, str]]:
    with gzip.open(path, "rb") as fh:
        rows = [(i.strip(), r.strip()) for i, r in list(csv.reader(io.TextIOWrapper(fh, encoding="utf-8")))[1:]]
    if limit:
        keep = set(list(dict.fromkeys(i for i, _ in rows))[:limit])
        rows = [(i, r) for i, r in rows if i in keep]
    return rows


def reference_mask(rles: list[str]) -> np.ndarray:
    """Union of an image's rows with the reference decoder."""
    out = np.zeros((1024, 1024), np.uint8)
    for rle in rles:
        if rle != "-1":
            out |= (rle2mask(rle, 1024, 1024).T > 0).astype(np.uint8)
    return out


def reference(rows: list[tuple[str, str]]) -> dict[str, int]:
    """Decode every image with the reference loop; return union areas (masks are not kept: 12 GB)."""
    by_image: dict[str, list[str]] = {}
    for image_id, rle in rows:
        by_image.setdefault(image_id, []).append(rle)
    return {i: np.count_nonzero(reference_mask(r)) for i, r in by_image.items()}


def ours(path: Path, ids: list[str] | None) -> dict[str, int]:
    """Read and decode with ptxseg; return union areas."""
    masks = read_rle_csv(path)
    return {i: np.count_nonzero(masks[i]) for i in (ids if ids is not None else masks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (default: all)")
    args = ap.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"benchmark needs the SIIM annotation file: {args.csv} not found")
    rows = _rows(args.csv, args.limit)
    ids = list(dict.fromkeys(i for i, _ in rows)) if args.limit else None
    t0 = time.perf_counter()
    a = ours(args.csv, ids)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = reference(rows)
    t_ref = time.perf_counter() - t0
    assert a == b, "union areas differ between the decoders"
    # Exact pixel equality on every positive image (outside the timings).
    masks = read_rle_csv(args.csv)
    by_image: dict[str, list[str]] = {}
    for image_id, rle in rows:
        if rle != "-1":
            by_image.setdefault(image_id, []).append(rle)
    for image_id, rles in by_image.items():
        assert np.array_equal(masks[image_id], reference_mask(rles)), f"mask differs: {image_id}"
    # The positive images alone (the rows with runs to paint); the file is read by both sides as before.
    t0 = time.perf_counter()
    pos_masks = read_rle_csv(args.csv)
    pos_ours = {i: np.count_nonzero(pos_masks[i]) for i in by_image}
    t_ours_pos = time.perf_counter() - t0
    t0 = time.perf_counter()
    pos_ref = {i: np.count_nonzero(reference_mask(r)) for i, r in by_image.items()}
    t_ref_pos = time.perf_counter() - t0
    assert pos_ours == pos_ref
    n_pos = sum(v > 0 for v in a.values())
    print(f"images decoded: {len(a)} ({n_pos} with pneumothorax); every mask identical on both sides")
    print(f"reference loop (mask_functions.rle2mask): {t_ref:8.2f} s")
    print(f"ptxseg read_rle_csv + decode:             {t_ours:8.2f} s")
    print(f"speed ratio (reference / ptxseg):         {t_ref / t_ours:8.1f}x")
    print(f"positive images only: reference {t_ref_pos:.2f} s, ptxseg {t_ours_pos:.2f} s, ratio {t_ref_pos / t_ours_pos:.1f}x")
    print("(both sides allocate a 1024x1024 mask per image; for the empty images that is all there is to do)")


if __name__ == "__main__":
    main()
