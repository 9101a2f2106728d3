"""Anatomy of a frontal chest-radiograph phantom, drawn as density maps.

All geometry is in *normalised* coordinates (x, y in ``[0, 1]`` of the image
side, y downwards) and rasterised at the requested size, so a phantom looks
the same at 256 or 1024 pixels. Density is additive and "higher = whiter", as
on a displayed radiograph: air dark, soft tissue grey, bone bright.

The patient's right is on the image's left (radiological convention): the
``right`` lung is the one with the smaller x.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _pts(xy: np.ndarray, size: int) -> np.ndarray:
    """Normalised (N, 2) points → cv2 fixed-point int32 pixel coordinates."""
    return np.round(xy * size * _ONE).astype(np.int32).reshape(-1, 1, 2)


def fill_polygon(xy: np.ndarray, size: int) -> np.ndarray:
    """Rasterise a normalised polygon into a uint8 0/1 mask."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_pts(xy, size)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def draw_curve(layer: np.ndarray, xy: np.ndarray, value: float, width: float) -> None:
    """Draw an anti-aliased polyline of normalised ``width`` (≥ 1 px) onto a float layer (max-combined)."""
    size = layer.shape[0]
    tmp = np.zeros_like(layer)
    thickness = max(1, int(round(width * size)))
    cv2.polylines(tmp, [_pts(xy, size)], False, float(value), thickness=thickness, lineType=cv2.LINE_AA, shift=_SHIFT)
    np.maximum(layer, tmp, out=layer)


def bezier(p0, p1, p2, n: int = 48) -> np.ndarray:
    """Points of a quadratic Bézier curve, shape (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def smooth_noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A smooth random profile of ``n`` samples with amplitude about ``scale``."""
    knots = rng.normal(0.0, scale, 6)
    return np.interp(np.linspace(0, 5, n), np.arange(6), knots)


@dataclass(frozen=True)
class Anatomy:
    """Per-patient anatomical parameters (normalised units)."""

    cx: float  # midline
    apex_y: float  # top of the lung apices
    base_y_right: float  # costophrenic angle, patient's right (image left)
    base_y_left: float
    half_width: float  # lateral extent of each lung from the midline
    mediastinum: float  # half-width of the upper mediastinum
    heart: float  # extra bulge of the heart border into the patient's left lung
    dome: float  # height of the diaphragm domes
    clavicle_y: float
    rib_step: float
    ap_view: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, ap_view: bool) -> Anatomy:
        base = rng.uniform(0.70, 0.78) - (0.035 if ap_view else 0.0)  # AP: supine, lower lung volume
        return cls(
            cx=0.5 + rng.normal(0, 0.008),
            apex_y=rng.uniform(0.11, 0.16),
            base_y_right=base - rng.uniform(0.015, 0.04),  # right hemidiaphragm sits higher
            base_y_left=base,
            half_width=rng.uniform(0.37, 0.42),
            mediastinum=rng.uniform(0.065, 0.085),
            heart=rng.uniform(0.09, 0.13) * (1.2 if ap_view else 1.0),  # AP magnifies the heart
            dome=rng.uniform(0.05, 0.08),
            clavicle_y=rng.uniform(0.13, 0.17) - (0.025 if ap_view else 0.0),
            rib_step=rng.uniform(0.060, 0.070),
            ap_view=ap_view,
        )


def lung_polygon(a: Anatomy, side: str, rng: np.random.Generator, n: int = 64) -> np.ndarray:
    """Outline of one full (aerated, pre-collapse) lung field, normalised (M, 2).

    Traced apex → lateral wall → costophrenic angle → diaphragm dome →
    medial (mediastinal/cardiac) border → apex.
    """
    sign = -1.0 if side == "right" else 1.0  # lateral direction on the image
    base = a.base_y_right if side == "right" else a.base_y_left
    t = np.linspace(0.0, 1.0, n)
    y = a.apex_y + t * (base - a.apex_y)
    # lateral wall: narrow rounded apex, widest near the base
    reach = a.half_width * (0.35 + 0.65 * np.sin(0.5 * np.pi * np.minimum(t / 0.85, 1.0)) ** 0.8)
    reach = reach + smooth_noise(rng, n, 0.006)
    lateral = np.stack([a.cx + sign * reach, y], 1)
    # medial border: upper mediastinum, then the heart on the patient's left
    medial_off = a.mediastinum + 0.02 * t
    if side == "left":
        medial_off = medial_off + a.heart * np.exp(-(((t - 0.82) / 0.22) ** 2))
    else:
        medial_off = medial_off + 0.25 * a.heart * np.exp(-(((t - 0.85) / 0.2) ** 2))  # right atrium
    # the medial border ends at the cardiophrenic angle, higher than the costophrenic one
    y_medial = a.apex_y + t * (base - 0.35 * a.dome - a.apex_y)
    medial = np.stack([a.cx + sign * (medial_off + smooth_noise(rng, n, 0.003)), y_medial], 1)
    # diaphragm dome from the costophrenic angle (lowest, lateral) to the cardiophrenic angle
    s = np.linspace(0.0, 1.0, n // 2)
    x0, x1 = lateral[-1, 0], medial[-1, 0]
    dome_y = base - (0.35 * a.dome) * s - a.dome * np.sin(np.pi * s) ** 0.9
    dome = np.stack([x0 + (x1 - x0) * s, dome_y], 1)
    # apex cap: a rounded arc above the first lateral and medial points
    u = np.linspace(0.0, np.pi, n // 3)
    mid_x = (lateral[0, 0] + medial[0, 0]) / 2
    half = abs(lateral[0, 0] - medial[0, 0]) / 2
    cap = np.stack([mid_x - sign * half * np.cos(u), a.apex_y - 0.035 * np.sin(u)], 1)[::-1]
    return np.concatenate([cap, lateral, dome, medial[::-1]], 0)


def hilum(a: Anatomy, side: str) -> tuple[float, float]:
    """Normalised position of a lung's hilum (where its vessels and bronchi enter)."""
    sign = -1.0 if side == "right" else 1.0
    base = a.base_y_right if side == "right" else a.base_y_left
    return a.cx + sign * (a.mediastinum + 0.06), a.apex_y + 0.42 * (base - a.apex_y)


def body_mask(a: Anatomy, size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft-tissue outline: neck, shoulders, chest wall and upper abdomen."""
    y = np.linspace(-0.01, 1.01, 80)
    shoulder = 0.46 + 0.02 * rng.standard_normal()
    width = np.where(
        y < 0.06,
        0.09,
        np.where(y < 0.16, 0.09 + (shoulder - 0.09) * np.sin(0.5 * np.pi * (y - 0.06) / 0.10), shoulder - 0.02 * (y - 0.16)),
    )
    left = np.stack([a.cx - width, y], 1)
    right = np.stack([a.cx + width, y], 1)[::-1]
    return fill_polygon(np.concatenate([left, right], 0), size)


def draw_bones(a: Anatomy, size: int, rng: np.random.Generator) -> np.ndarray:
    """Density of spine, clavicles, posterior and anterior ribs (float32 layer)."""
    bones = np.zeros((size, size), np.float32)
    # spine: a vertical band with faint vertebral end plates
    spine = np.zeros_like(bones)
    draw_curve(spine, np.array([[a.cx, 0.0], [a.cx, 1.0]]), 0.05, 0.05)
    for k in range(24):
        yk = 0.02 + k * 0.042
        draw_curve(spine, np.array([[a.cx - 0.025, yk], [a.cx + 0.025, yk]]), 0.07, 0.004)
    bones += spine
    for sign in (-1.0, 1.0):
        # clavicle: S-shaped band from the sternal notch to the shoulder
        cl = bezier(
            (a.cx + sign * 0.035, a.clavicle_y + 0.02),
            (a.cx + sign * 0.16, a.clavicle_y - 0.03),
            (a.cx + sign * 0.30, a.clavicle_y - (0.01 if a.ap_view else 0.05)),
        )
        layer = np.zeros_like(bones)
        draw_curve(layer, cl, 0.08, 0.018)
        bones += layer
        # posterior ribs: arc up-laterally from the spine then down along the chest wall
        for k in range(10):
            y0 = a.apex_y - 0.03 + k * a.rib_step
            rib = bezier(
                (a.cx + sign * 0.03, y0),
                (a.cx + sign * 0.22, y0 - 0.07),
                (a.cx + sign * (a.half_width + 0.03), y0 + 0.10 + 0.01 * k),
            )
            layer = np.zeros_like(bones)
            draw_curve(layer, rib, 0.028, 0.020)
            draw_curve(layer, rib + [0, 0.010], 0.045, 0.003)  # brighter lower cortex
            bones += layer
        # anterior ribs: fainter, sloping down toward the sternum
        for k in range(6):
            y0 = a.apex_y + 0.05 + k * a.rib_step * 1.1
            rib = bezier(
                (a.cx + sign * (a.half_width - 0.02), y0),
                (a.cx + sign * 0.22, y0 + 0.03),
                (a.cx + sign * 0.09, y0 + 0.09),
            )
            layer = np.zeros_like(bones)
            draw_curve(layer, rib, 0.015, 0.016)
            bones += layer
        if a.ap_view:  # scapulae project over the lateral lung fields on AP films
            sc = bezier(
                (a.cx + sign * 0.42, 0.16),
                (a.cx + sign * 0.33, 0.30),
                (a.cx + sign * 0.40, 0.46),
            )
            layer = np.zeros_like(bones)
            draw_curve(layer, sc, 0.03, 0.05)
            bones += layer
    return bones


def draw_vessels(a: Anatomy, side: str, lung: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vascular markings of one lung: branching trees from the hilum that taper to the periphery."""
    size = lung.shape[0]
    layer = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(lung)
    if xs.size == 0:
        return layer
    hx, hy = hilum(a, side)
    start = np.array([hx, hy])

    def grow(p0: np.ndarray, direction: np.ndarray, length: float, width: float, value: float, depth: int) -> None:
        steps = 6
        p = p0.copy()
        pts = [p.copy()]
        for _ in range(steps):
            direction = direction + rng.normal(0, 0.18, 2)
            direction /= np.linalg.norm(direction) + 1e-9
            p = p + direction * length / steps
            pts.append(p.copy())
        pts_arr = np.array(pts)
        for i in range(steps):  # taper along the branch
            f = 1.0 - 0.5 * i / steps
            draw_curve(layer, pts_arr[i : i + 2], value * f, width * f)
        if depth > 0:
            for turn in (-0.5, 0.45):
                c, s = np.cos(turn), np.sin(turn)
                d = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])
                grow(pts_arr[-1], d, length * 0.62, width * 0.6, value * 0.7, depth - 1)

    pick = rng.choice(xs.size, size=9, replace=False)
    for i in pick:
        target = np.array([xs[i], ys[i]]) / size
        d = target - start
        dist = np.linalg.norm(d) + 1e-9
        grow(start, d / dist, dist * 0.55, rng.uniform(0.008, 0.012), rng.uniform(0.07, 0.10), depth=3)
    layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, size / 900))
    return layer * lung
