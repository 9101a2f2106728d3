"""Where do pneumothorax models respond on the two real SIIM positives? (figure of docs/sim2real.md)

    .venv/bin/python scripts/sim2real_heatmaps.py NAME=MODEL [NAME=MODEL ...] [--out docs/img/sim2real_real_positives.jpg]

One row per real positive of ../shared/data/siim/real_sample: the film with its SIIM mask (red), then per model
its probability map (TTA identity + hflip, scaled to its own maximum) with the mask outlined in white, the map's
maximum and its maximum inside the mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.infer.predictor import Predictor
from ptxseg.io.rle import read_rle_csv

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSITIVES = ("1.2.276.0.7230010.3.1.4.8323329.5797.1517875190.762694", "1.2.276.0.7230010.3.1.4.8323329.32765.1517875162.241309")
SIDE = 512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=MODEL (a run directory, checkpoint or bundle)")
    ap.add_argument("--out", type=Path, default=Path("docs/img/sim2real_real_positives.jpg"))
    args = ap.parse_args()
    masks = read_rle_csv(DATA / "siim" / "train-rle.csv.gz")
    models = {name: Predictor([path], tta=["identity", "hflip"]) for name, path in (m.split("=", 1) for m in args.models)}
    rows = []
    for image_id in POSITIVES:
        image = cv2.resize(load_radiograph(DATA / "siim" / "real_sample" / f"{image_id}.png").image.astype(np.float32), (SIDE, SIDE))
        truth = cv2.resize(masks[image_id].astype(np.uint8), (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)
        outline, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        base = cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        tiles = [cv2.drawContours(base.copy(), outline, -1, (0, 0, 255), 2)]
        for name, predictor in models.items():
            prob = predictor.predict([image])[0].prob
            scaled = np.round(np.clip(prob / max(float(prob.max()), 1e-6), 0, 1) * 255).astype(np.uint8)
            tile = cv2.addWeighted(base, 0.6, cv2.applyColorMap(scaled, cv2.COLORMAP_JET), 0.4, 0)
            cv2.drawContours(tile, outline, -1, (255, 255, 255), 1)
            label = f"{name}: max p={prob.max():.3f}; inside the mask {prob[truth > 0].max():.3f}"
            cv2.putText(tile, label, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(args.out)


if __name__ == "__main__":
    main()
