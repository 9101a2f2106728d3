"""The pneumothorax region of a phantom: where the lung has pulled away from the chest wall.

Physically the affected lung retracts toward its hilum; between the chest wall
and the retracted visceral pleura lies air without lung markings. The region is
built either procedurally (:func:`procedural_region`: the lung shrunk toward
its hilum, limited to an angular sector seen from the hilum, sized by bisection
to a target area) or from a real SIIM mask shape (:func:`place_real_mask`).
"""

from __future__ import annotations

import cv2
import numpy as np

#: log10 of SIIM pneumothorax areas at 1024² (all 2,669 positive images of
#: train-rle.csv): mean 3.92, sd 0.47 — procedural sizes follow this law.
SIIM_LOG10_AREA_MEAN = 3.92
SIIM_LOG10_AREA_SD = 0.47
SIIM_AREA_RANGE_1024 = (55, 161_421)


def sample_target_area(rng: np.random.Generator, size: int) -> float:
    """A pneumothorax area in pixels at ``size``², drawn from the SIIM size law (clipped to its range)."""
    area_1024 = 10 ** rng.normal(SIIM_LOG10_AREA_MEAN, SIIM_LOG10_AREA_SD)
    area_1024 = float(np.clip(area_1024, 150, SIIM_AREA_RANGE_1024[1]))
    return area_1024 * (size / 1024) ** 2


def _shrunk(lung: np.ndarray, centre: tuple[float, float], factor: float) -> np.ndarray:
    """The lung mask scaled by ``factor`` about ``centre`` (pixel coordinates)."""
    m = cv2.getRotationMatrix2D(centre, 0.0, factor)
    return cv2.warpAffine(lung, m, lung.shape[::-1], flags=cv2.INTER_NEAREST)


def procedural_region(lung: np.ndarray, hilum_px: tuple[float, float], target_area: float, rng: np.random.Generator) -> np.ndarray:
    """A collapse of ``lung`` toward ``hilum_px`` whose free-air region has about ``target_area`` pixels.

    The region is limited to a sector seen from the hilum, centred on the apex
    or the lateral wall (where real pneumothoraces collect in an upright
    patient), wider for larger collapses. Returns a uint8 0/1 mask inside ``lung``.
    """
    size = lung.shape[0]
    lung_area = float(lung.sum())
    frac = min(target_area / max(lung_area, 1.0), 0.95)
    yy, xx = np.mgrid[0:size, 0:size]
    hx, hy = hilum_px
    angle = np.arctan2(yy - hy, xx - hx)  # 0 = image right, -pi/2 = up
    # Sector centre: straight up (-pi/2) turned toward the lateral wall by up to 54 degrees;
    # the lateral wall is at angle pi for the lung on the image's left, 0 for the other.
    toward_lateral = -1.0 if hx < size / 2 else 1.0
    centre = -np.pi / 2 + toward_lateral * rng.uniform(0.0, 0.6) * np.pi / 2
    # larger collapses wrap around more of the lung
    half_width = np.deg2rad(45 + 140 * min(1.0, frac * 2.5) + rng.uniform(-10, 15))
    diff = np.abs(np.arctan2(np.sin(angle - centre), np.cos(angle - centre)))
    # the sector, and only the lateral side of the hilum (air rarely tracks along the mediastinum)
    sector = (diff <= half_width) & ((xx - hx) * toward_lateral > -0.02 * size)

    def collapse(factor: float) -> np.ndarray:
        return (lung.astype(bool) & ~_shrunk(lung, (hx, hy), factor).astype(bool) & sector).astype(np.uint8)

    lo, hi = 0.05, 0.995  # shrink factor: small = large collapse; region area falls as it grows
    target_area = max(target_area, 4.0)
    for _ in range(18):
        mid = (lo + hi) / 2
        if collapse(mid).sum() > target_area:
            lo = mid
        else:
            hi = mid
    # lo is the mildest collapse found with at least the target area: never an empty region
    return _largest_component(collapse(lo))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == keep).astype(np.uint8)


def place_real_mask(real: np.ndarray, lung: np.ndarray, side: str) -> np.ndarray:
    """Fit a real SIIM mask shape (already in ``lung``'s H×W frame) into the periphery of ``lung``.

    The part of ``real`` on the given side of the image is shifted horizontally
    so its lateral edge meets the lung's lateral wall at the mask's mean row,
    then clipped to the lung. Returns a uint8 0/1 mask (possibly empty).
    """
    rows, cols = lung.shape
    half = np.zeros_like(real)
    if side == "right":
        half[:, : cols // 2] = real[:, : cols // 2]
    else:
        half[:, cols // 2 :] = real[:, cols // 2 :]
    ys, xs = np.nonzero(half)
    if xs.size == 0:
        return half
    row = int(np.clip(round(ys.mean()), 0, rows - 1))
    lung_cols = np.flatnonzero(lung[row])
    if lung_cols.size == 0:
        lung_rows = np.flatnonzero(lung.any(1))
        if lung_rows.size == 0:
            return np.zeros_like(half)
        row = int(lung_rows[np.argmin(np.abs(lung_rows - row))])
        lung_cols = np.flatnonzero(lung[row])
    if side == "right":
        shift = int(lung_cols.min() - xs.min())
    else:
        shift = int(lung_cols.max() - xs.max())
    m = np.float32([[1, 0, shift], [0, 1, 0]])
    moved = cv2.warpAffine(half, m, (cols, rows), flags=cv2.INTER_NEAREST)
    return moved & lung


def pleural_line(collapsed: np.ndarray, region: np.ndarray, width_px: int = 1) -> np.ndarray:
    """The visceral pleural line: the edge of the retracted lung that faces the free air (0/1)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width_px + 1, 2 * width_px + 1))
    near_air = cv2.dilate(region, kernel)
    return (near_air & collapsed).astype(np.uint8)
