"""How much darker than the lung beside it is a pneumothorax — on real films, and as inserted?

    .venv/bin/python benchmarks/sim2real_contrast.py [--films 40] [--air-drop 0.6 ...]

One statistic, measured the same way on both: the film's low-pass (the rendering's own, 0.6 % of the width)
averaged over the pneumothorax inside its lung field, against the lung beside it (a band 3-8 % of the width away,
same lung field), as a share of that lung level's height above the darkest lung (2nd percentile):
``(beside - region) / (beside - floor)``; 0: no darker, 1: as dark as the darkest lung.

Real: the positives of ../shared/data/siim/real_sample with their SIIM masks and the shipped lung model's fields
(a positive whose mask covers under 2 % of its lung field is too small to measure and is reported as such).
Inserted: ``--films`` adult films of lungs_real with their human lung fields and random real SIIM shapes, for each
``--air-drop`` asked for; the percentiles of the statistic are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.io.images import read_image
from ptxseg.io.rle import read_rle_csv
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.synth.insert import InsertParams, insert_lesion
from ptxseg.tasks.lungs import LungSegmenter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def darkening(image: np.ndarray, region: np.ndarray, lung: np.ndarray, lung_any: np.ndarray) -> float | None:
    """The statistic of the module docstring, or None when the region or the lung beside it is too small."""
    n = image.shape[1]
    region = (region > 0) & (lung > 0)
    if region.sum() < 0.02 * (lung > 0).sum():
        return None
    low = cv2.GaussianBlur(image.astype(np.float32), (0, 0), InsertParams().vessel_sigma * n)
    floor = float(np.percentile(low[lung_any > 0], 2))
    near = cv2.dilate(region.astype(np.uint8), np.ones((int(0.08 * n),) * 2, np.uint8)) > 0
    near &= (lung > 0) & ~(cv2.dilate(region.astype(np.uint8), np.ones((int(0.03 * n),) * 2, np.uint8)) > 0)
    if near.sum() < 50:
        return None
    beside, inside = float(low[near].mean()), float(low[region].mean())
    return (beside - inside) / max(beside - floor, 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--films", type=int, default=40)
    ap.add_argument("--air-drop", type=float, nargs="+", default=[InsertParams().air_drop])
    args = ap.parse_args()
    masks = read_rle_csv(DATA / "siim" / "train-rle.csv.gz")
    segmenter = LungSegmenter(None)
    for path in sorted((DATA / "siim" / "real_sample").iterdir()):
        image_id = path.stem
        if image_id not in masks.positive_ids:
            continue
        image = load_radiograph(path).image
        n = image.shape[0]
        ptx = cv2.resize(masks[image_id].astype(np.uint8), (n, n), interpolation=cv2.INTER_NEAREST)
        fields = split_lungs(segmenter.model.predict([image])[0].mask(segmenter.model.operating_point))
        for side, lung in (("right", fields.right), ("left", fields.left)):
            if not (ptx.astype(bool) & lung).any():
                continue
            value = darkening(image, ptx, lung, fields.right | fields.left)
            shown = "too small to measure" if value is None else f"{value:.2f}"
            print(f"real SIIM …{image_id[-6:]} ({n}², {side}): {shown}")
    root = DATA / "lungs_real"
    ids = pd.read_csv(root / "manifest.csv").query("age_group == 'adult'")["id"].tolist()[: args.films]
    positives = masks.positive_ids
    for drop in args.air_drop:
        rng = np.random.default_rng(0)
        values = []
        for image_id in ids:
            image = read_image(root / "images" / f"{image_id}.jpg").astype(np.float32)
            fields = split_lungs(cv2.imread(str(root / "masks" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE) == 255)
            lungs = {"right": fields.right.astype(np.uint8), "left": fields.left.astype(np.uint8)}
            out = insert_lesion(image, lungs, masks[positives[int(rng.integers(len(positives)))]], rng, InsertParams(air_drop=drop))
            for side in ("right", "left"):
                value = darkening(out.image, out.mask, lungs[side], fields.right | fields.left)
                if value is not None:
                    values.append(value)
        q = np.percentile(values, [10, 25, 50, 75, 90])
        print(f"inserted, air_drop {drop}: {len(values)} lesions; percentiles 10/25/50/75/90: {' / '.join(f'{v:.2f}' for v in q)}")


if __name__ == "__main__":
    main()
