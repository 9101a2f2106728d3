"""Where the lung fields lie on a SIIM film: the median bounding box of each lung field, as shares of the image,
found by the shipped lung-field model on every 4th of the 400 unlabelled SIIM stage-2 DICOMs. The lesion
insertion (``ptxseg.synth.insert.SIIM_LUNG_BOXES``) maps a SIIM mask from these boxes to a background's lungs.

    .venv/bin/python scripts/siim_lung_boxes.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.tasks.lungs import LungSegmenter

SIIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim" / "unlabeled_dicom"


def main() -> None:
    warnings.filterwarnings("ignore", message="Invalid value for VR")  # the stage-2 files' ID_… UIDs
    segmenter = LungSegmenter()
    boxes: dict[str, list] = {"right": [], "left": []}
    for path in sorted(SIIM.glob("*.dcm"))[::4]:
        image = load_radiograph(path).image
        fields = split_lungs(segmenter.model.predict([image])[0].mask(segmenter.model.operating_point))
        for side, m in (("right", fields.right), ("left", fields.left)):
            if m.any():
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                h, w = m.shape
                boxes[side].append((rows[0] / h, rows[-1] / h, cols[0] / w, cols[-1] / w))
    for side, found in boxes.items():
        a = np.array(found)
        iqr = np.percentile(a, 75, 0) - np.percentile(a, 25, 0)
        median = np.median(a, 0).round(3).tolist()
        print(f"{side}: {len(a)} films; top, bottom, left, right (median) {median}; IQR {iqr.round(3).tolist()}")


if __name__ == "__main__":
    main()
