"""Which last processing step makes the labelled SIIM films look like the unlabelled ones (docs/real-model.md)?

Two low-level cues a network reads at once: high-frequency energy (mean |Laplacian|) and 8×8 JPEG blockiness
(mean step across 8-pixel column boundaries over the mean step anywhere). Printed for 80 unlabelled films and
for 72 train_real films (40 JPEG + the 32 DICOM negatives) taken from 1024² to 320² with each OpenCV
interpolation, with and without a JPEG round trip at quality 89 (the unlabelled films' own tables).

    python benchmarks/source_chain.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
from PIL import Image


def cues(img: np.ndarray) -> tuple[float, float]:
    f = img.astype(np.float32)
    step = np.abs(np.diff(f, axis=1))
    return float(np.abs(cv2.Laplacian(f, cv2.CV_32F)).mean()), float(step[:, 7::8].mean() / step.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    siim = args.shared / "siim"
    unlabelled = sorted((siim / "unlabeled_train" / "images").glob("*.jpg"))
    picks = np.random.default_rng(0).choice(len(unlabelled), 80, replace=False)
    u = np.array([cues(cv2.imread(str(unlabelled[i]), cv2.IMREAD_GRAYSCALE)) for i in picks])
    tables = [np.mean(Image.open(unlabelled[i]).quantization[0]) for i in picks[:10]]
    print(
        f"unlabelled 320² JPEG            |Laplacian| {u[:, 0].mean():.2f}  blockiness {u[:, 1].mean():.3f}"
        f"  (mean luminance quantisation step {np.mean(tables):.1f})"
    )
    table = pd.read_csv(siim / "train_real" / "manifest.csv")
    files = list(table[table["format"] == "jpeg"]["file"].sample(40, random_state=0)) + list(
        table[table["format"] == "dicom"]["file"][~table["positive"]]
    )
    films = [
        pydicom.dcmread(siim / "train_real" / f).pixel_array if f.endswith(".dcm") else cv2.imread(str(siim / "train_real" / f), 0)
        for f in files
    ]
    for name, interp in (
        ("area", cv2.INTER_AREA),
        ("linear", cv2.INTER_LINEAR),
        ("cubic", cv2.INTER_CUBIC),
        ("lanczos", cv2.INTER_LANCZOS4),
    ):
        for quality in (None, 89):
            rows = []
            for a in films:
                s = cv2.resize(a, (320, 320), interpolation=interp)
                if quality:
                    s = cv2.imdecode(cv2.imencode(".jpg", s, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)
                rows.append(cues(s))
            r = np.array(rows)
            label = f"train_real → 320² {name:7s} {'+ JPEG 89' if quality else '         '}"
            print(f"{label} |Laplacian| {r[:, 0].mean():.2f}  blockiness {r[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
