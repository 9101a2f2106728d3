"""Lung fields from a lung-field mask: the two lungs, which is which, and what went wrong (pure numpy + OpenCV).

Phase I of the two-phase method: a lung-field model (``configs/lungs_unet_r34_256.yaml``,
trained with the same engine on the ``lungs/`` masks of a dataset) gives one
mask of both fields; :func:`split_lungs` turns it into the patient's right and
left lung. Radiographs are read as the radiologist sees them: the patient's
right lung is on the **image's left**.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: a component smaller than this share of the largest one is noise, not a lung
MIN_SHARE_OF_LARGEST = 0.2
#: a single component whose centroid lies this close to the image's centre column (share of the width) is
#: taken as both lungs merged across the mediastinum
MERGED_CENTRE_BAND = 0.15


@dataclass
class LungFields:
    """The patient's ``right`` and ``left`` lung fields (bool H×W) and notes on anything unusual."""

    right: np.ndarray
    left: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.right.any() or self.left.any())


def _midline_split(component: np.ndarray) -> int:
    """Column at which one merged component is split: the narrowest column (fewest pixels) of its middle third."""
    cols = np.flatnonzero(component.any(0))
    c0, c1 = cols[0], cols[-1]
    lo, hi = c0 + (c1 - c0) // 3, c0 + 2 * (c1 - c0) // 3
    counts = component[:, lo : hi + 1].sum(0)
    return int(lo + np.argmin(counts))


def split_lungs(mask: np.ndarray) -> LungFields:
    """Split a binary lung-field mask (H×W, non-zero = lung) into the patient's right and left lung.

    Keeps the two largest 8-connected components (smaller ones than
    ``MIN_SHARE_OF_LARGEST`` of the largest are dropped as noise) and assigns
    them by centroid: the one on the image's left is the patient's right lung.
    A single component centred on the midline is split at its narrowest
    column (the mediastinum); a single off-centre component is one lung, and
    the other is reported missing.
    """
    m = (np.asarray(mask) != 0).astype(np.uint8)
    h, w = m.shape
    right, left = np.zeros((h, w), bool), np.zeros((h, w), bool)
    notes: list[str] = []
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return LungFields(right, left, ["no lung field found"])
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    largest = stats[order[0], cv2.CC_STAT_AREA]
    kept = [k for k in order[:2] if stats[k, cv2.CC_STAT_AREA] >= MIN_SHARE_OF_LARGEST * largest]
    dropped = n - 1 - len(kept)
    if dropped:
        notes.append(f"{dropped} small component(s) dropped")
    if len(kept) == 2:
        a, b = sorted(kept, key=lambda k: centroids[k][0])  # by centroid column
        right[labels == a], left[labels == b] = True, True
        return LungFields(right, left, notes)
    comp = labels == kept[0]
    cx = centroids[kept[0]][0]
    if abs(cx - w / 2) <= MERGED_CENTRE_BAND * w:
        split = _midline_split(comp)
        right[:, :split], left[:, split:] = comp[:, :split], comp[:, split:]
        notes.append(f"lung fields merged across the midline: split at column {split}")
    elif cx < w / 2:
        right = comp
        notes.append("left lung field not found")
    else:
        left = comp
        notes.append("right lung field not found")
    return LungFields(right, left, notes)


def side_labels(mask: np.ndarray) -> np.ndarray:
    """A human lung-field annotation (H×W, non-zero = lung) as uint8 labels: 0 background, 1 the patient's right
    lung, 2 the patient's left lung.

    Unlike :func:`split_lungs` (which cleans a model's output), no annotated pixel is dropped: the two main fields
    come from :func:`split_lungs` and every other annotated fragment takes the side of the field whose centroid
    column is nearer to its own.
    """
    m = np.asarray(mask) != 0
    out = np.zeros(m.shape, np.uint8)
    if not m.any():
        return out
    fields = split_lungs(m)
    out[fields.right] = 1
    out[fields.left] = 2
    rest = m & (out == 0)
    if rest.any():
        cols = np.arange(m.shape[1])
        centre = {
            side: (cols * field.sum(0)).sum() / field.sum() if field.any() else (0.25 if side == 1 else 0.75) * m.shape[1]
            for side, field in ((1, fields.right), (2, fields.left))
        }
        n, labels, _, centroids = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            cx = centroids[k][0]
            out[labels == k] = 1 if abs(cx - centre[1]) <= abs(cx - centre[2]) else 2
    return out
