"""Can an inserted lesion be told from untouched lung by cues a real pneumothorax does not have?

    .venv/bin/python benchmarks/sim2real_cues.py [--films 150] [--seed 0]

For ``--films`` real radiographs of ../shared/data/lungs_real (with their human lung fields) a real SIIM shape is
inserted (``ptxseg.synth.insert``); the region's trivial cues (``trivial_cues``: grain level and fine-scale
sharpness, each relative to the rest of the lung) are measured on the inserted film and, at the same place, on
the untouched film. A logistic regression (5-fold cross-validated) tells the two apart: its AUROC is printed
(0.5: no cue; 1: the insertion gives itself away). Part of the sharpness cue is physics — a real pneumothorax
has no vessels at the 1-2 px scale either — so this is an upper bound on the trivial cues, not a pure measure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from ptxseg.io.images import read_image
from ptxseg.io.rle import read_rle_csv
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.synth.insert import insertion_cues

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--films", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = DATA / "lungs_real"
    ids = pd.read_csv(root / "manifest.csv")["id"].tolist()
    ids = ids[:: max(1, len(ids) // args.films)][: args.films]
    masks = read_rle_csv(DATA / "siim" / "train-rle.csv.gz")
    positives = masks.positive_ids
    rng = np.random.default_rng(args.seed)
    features, labels = [], []
    for image_id in ids:
        image = read_image(root / "images" / f"{image_id}.jpg").astype(np.float32)
        fields = split_lungs(cv2.imread(str(root / "masks" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE) == 255)
        if not (fields.right.any() and fields.left.any()):
            continue
        lungs = {"right": fields.right.astype(np.uint8), "left": fields.left.astype(np.uint8)}
        cues = insertion_cues(image, lungs, masks[positives[int(rng.integers(len(positives)))]], rng)
        if cues is None:
            continue
        features += list(cues)
        labels += [1, 0]
    x, y = np.array(features), np.array(labels)
    p = cross_val_predict(LogisticRegression(), x, y, cv=5, method="predict_proba")[:, 1]
    print(f"{len(y) // 2} films; inserted vs untouched by grain and fine-scale sharpness: AUROC {roc_auc_score(y, p):.3f}")
    for name, k in (("grain log-ratio", 0), ("sharpness log-ratio", 1)):
        print(f"  {name}: inserted {x[y == 1, k].mean():+.3f}, untouched {x[y == 0, k].mean():+.3f} (0: like the rest of the lung)")


if __name__ == "__main__":
    main()
