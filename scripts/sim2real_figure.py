"""The figure of docs/sim2real.md: lesions inserted into real radiographs beside a real SIIM pneumothorax.

    .venv/bin/python scripts/sim2real_figure.py [--out docs/img/sim2real_examples.jpg] [--seed 4]

Top row: four adult films of ../shared/data/lungs_real with a real SIIM shape inserted (``ptxseg.synth.insert``,
human lung fields); bottom row: the same films with the lesion outlined, and the real SIIM positive of
``siim/real_sample`` (…5797.1517875190.762694) with its own mask outlined — as drawn by its annotator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ptxseg.io.images import read_image
from ptxseg.io.rle import read_rle_csv
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.synth.insert import insert_lesion

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_POSITIVE = "1.2.276.0.7230010.3.1.4.8323329.5797.1517875190.762694"
HEIGHT = 360


def _tile(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    rgb = cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if mask is not None:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, (60, 60, 255), max(1, image.shape[1] // 400))
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * HEIGHT / h), HEIGHT), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/sim2real_examples.jpg"))
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()
    root = DATA / "lungs_real"
    ids = pd.read_csv(root / "manifest.csv").query("age_group == 'adult'")["id"].tolist()
    masks = read_rle_csv(DATA / "siim" / "train-rle.csv.gz")
    positives = masks.positive_ids
    large = [i for i in positives[:600] if masks[i].sum() > 15000]  # lesions big enough to see at this scale
    rng = np.random.default_rng(args.seed)
    top, bottom = [], []
    for image_id in ids[10:14]:
        image = read_image(root / "images" / f"{image_id}.jpg").astype(np.float32)
        fields = split_lungs(cv2.imread(str(root / "masks" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE) == 255)
        lungs = {"right": fields.right.astype(np.uint8), "left": fields.left.astype(np.uint8)}
        out = insert_lesion(image, lungs, masks[large[int(rng.integers(len(large)))]], rng)
        top.append(_tile(out.image, None))
        bottom.append(_tile(out.image, out.mask))
    real = read_image(DATA / "siim" / "real_sample" / f"{REAL_POSITIVE}.png").astype(np.float32)
    top.append(_tile(real, None))
    bottom.append(_tile(real, masks[REAL_POSITIVE]))
    figure = np.vstack([np.hstack(top), np.hstack(bottom)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), figure, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(args.out)


if __name__ == "__main__":
    main()
