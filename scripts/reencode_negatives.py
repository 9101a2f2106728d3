"""Write each original SIIM DICOM of a train_real folder as a lossy JPEG named by its ImageId (the format most
positives arrived in): the pairs test whether a model answers the format instead of the film (docs/real-model.md).

    python scripts/reencode_negatives.py SIIM/train_real OUT [--quality 75]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import pandas as pd
import pydicom

from ptxseg.io.names import check_name, under


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train_real", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--quality", type=int, default=75, help="JPEG quality (75: the positives' measured tables)")
    args = ap.parse_args()
    table = pd.read_csv(args.train_real / "manifest.csv")
    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for rel, image_id in zip(table["file"], table["ImageId"], strict=True):
        if not rel.endswith(".dcm"):
            continue
        ds = pydicom.dcmread(args.train_real / rel)
        pixels = ds.pixel_array  # 8-bit MONOCHROME2 in SIIM, stored without a VOI window
        cv2.imwrite(str(under(args.out, f"{check_name(image_id, rel)}.jpg")), pixels, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        n += 1
    print(f"{n} DICOM films re-encoded as JPEG (quality {args.quality}) in {args.out}")


if __name__ == "__main__":
    main()
