"""Pneumothorax size per side: lesion-to-lung assignment, ratio to the lung field, severity (pure numpy + OpenCV).

The denominator is the **full (pre-collapse) lung field** of that side, as in
the published two-phase method: the lung-field model is trained on full
fields. A lung segmentation that followed the collapsed lung instead would
make the denominator smaller by the pneumothorax itself and the ratio larger;
one that missed part of a field would do the same. The ratio is an area ratio
on a projection radiograph, not a volume.

Sides are the **patient's**: on a PA radiograph displayed as usual, the
patient's right lung is on the image's left.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: ratio boundaries (%): below the first mild, up to the second moderate, above it severe
SEVERITY_BOUNDS = (20.0, 40.0)
SIDES = ("right", "left")


def severity(ratio_pct: float | None, bounds: tuple[float, float] = SEVERITY_BOUNDS) -> str | None:
    """``none`` for 0 %, ``mild`` below ``bounds[0]``, ``moderate`` up to and including ``bounds[1]``, else ``severe``;
    None when the ratio is unknown (no lung field on that side)."""
    if ratio_pct is None:
        return None
    if ratio_pct <= 0:
        return "none"
    if ratio_pct < bounds[0]:
        return "mild"
    return "moderate" if ratio_pct <= bounds[1] else "severe"


def area_mm2(area_px: int, pixel_mm2: float | None) -> float | None:
    """``area_px`` pixels of ``pixel_mm2`` mm² each, in mm² to 0.01 mm² (exact for spacings given to 0.1 mm; finer
    digits are float noise such as ``2357.0847160000008``, far below what a pixel spacing's precision carries);
    None without a pixel spacing."""
    return None if pixel_mm2 is None else round(float(area_px) * float(pixel_mm2), 2)


def _side_result(area_px: int, lung_px: int, lesions: int, pixel_mm2: float | None, bounds) -> dict[str, Any]:
    # severity from the exact ratio (a one-pixel pneumothorax is mild, not "none"); the ratio shown to 0.01 %
    ratio = 100.0 * area_px / lung_px if lung_px > 0 else None
    return {
        "area_px": int(area_px),
        "area_mm2": area_mm2(area_px, pixel_mm2),
        "lung_area_px": int(lung_px),
        "lung_area_mm2": area_mm2(lung_px, pixel_mm2),
        "ratio_pct": None if ratio is None else round(ratio, 2),
        "severity": severity(ratio, bounds),
        "lesions": int(lesions),
    }


def quantify(
    ptx_mask: np.ndarray,
    lung_right: np.ndarray,
    lung_left: np.ndarray,
    spacing_mm: tuple[float, float] | None = None,
    bounds: tuple[float, float] = SEVERITY_BOUNDS,
) -> dict[str, Any]:
    """Size the pneumothorax on each side.

    Args:
        ptx_mask: H×W pneumothorax mask (non-zero = pneumothorax).
        lung_right, lung_left: H×W full lung fields of the patient's right and left lung.
        spacing_mm: (row, column) millimetres per pixel **of these arrays**, or None when unknown.
        bounds: severity boundaries in % (see :func:`severity`).

    Returns:
        ``{"right": {...}, "left": {...}, "unassigned_px": int, "lesions": [...]}``; each side has
        ``area_px``, ``area_mm2`` (None without spacing), ``lung_area_px``, ``lung_area_mm2``,
        ``ratio_pct`` (Σ lesion area / lung area × 100), ``severity`` (``none``/``mild``/``moderate``/
        ``severe``) — both None when that lung field is missing — and ``lesions`` (count). ``lesions`` lists
        every 8-connected lesion: ``area_px``, ``centroid`` (row, col), ``side`` (or None) and ``rule``:
        ``centroid`` (the lung containing its centroid), ``nearest`` (no lung contains it: the lung
        closest to the centroid, by distance transform) or ``none`` (no lung field at all).
    """
    ptx = np.asarray(ptx_mask) != 0
    lungs = {"right": np.asarray(lung_right) != 0, "left": np.asarray(lung_left) != 0}
    for name, arr in (("lung_right", lungs["right"]), ("lung_left", lungs["left"])):
        if arr.shape != ptx.shape:
            raise ValueError(f"{name} has shape {arr.shape}, the pneumothorax mask {ptx.shape}")
    pixel_mm2 = None if spacing_mm is None else float(spacing_mm[0]) * float(spacing_mm[1])
    areas = dict.fromkeys(SIDES, 0)
    counts = dict.fromkeys(SIDES, 0)
    unassigned = 0
    lesions = []
    distance: dict[str, np.ndarray] = {}
    if ptx.any():
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(ptx.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            area = int(stats[k, cv2.CC_STAT_AREA])
            cx, cy = centroids[k]
            r = min(max(int(round(cy)), 0), ptx.shape[0] - 1)
            c = min(max(int(round(cx)), 0), ptx.shape[1] - 1)
            inside = [s for s in SIDES if lungs[s][r, c]]
            if inside:
                side, rule = inside[0], "centroid"
            elif any(lungs[s].any() for s in SIDES):
                for s in SIDES:
                    if s not in distance and lungs[s].any():
                        # distance of every pixel to the nearest pixel of that lung
                        distance[s] = cv2.distanceTransform((~lungs[s]).astype(np.uint8), cv2.DIST_L2, 5)
                side = min(distance, key=lambda s: distance[s][r, c])
                rule = "nearest"
            else:
                side, rule = None, "none"
            if side is None:
                unassigned += area
            else:
                areas[side] += area
                counts[side] += 1
            lesions.append({"area_px": area, "centroid": [float(cy), float(cx)], "side": side, "rule": rule})
    out: dict[str, Any] = {s: _side_result(areas[s], int(lungs[s].sum()), counts[s], pixel_mm2, bounds) for s in SIDES}
    out["unassigned_px"] = int(unassigned)
    out["lesions"] = lesions
    return out


def scale_spacing(spacing_mm: tuple[float, float] | None, source_shape: tuple[int, int], shape: tuple[int, int]):
    """Pixel spacing of an image of ``source_shape`` resampled to ``shape`` (None stays None)."""
    if spacing_mm is None:
        return None
    return (spacing_mm[0] * source_shape[0] / shape[0], spacing_mm[1] * source_shape[1] / shape[1])
