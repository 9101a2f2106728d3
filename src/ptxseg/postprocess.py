"""From probability maps to masks: operating points (pure numpy + OpenCV labelling).

An operating point is a probability threshold, a minimum connected-component
size and a minimum total mask size (below which the mask is emptied, the rule
that decides "no pneumothorax" on most SIIM negatives), optionally with the
"triplet" rule of the SIIM 1st-place solution: the mask is emptied unless at
least ``top_min_px`` pixels exceed ``top_threshold``; otherwise the pixels
above ``threshold`` (the bottom threshold) are kept. Pixel counts are given
for an ``at_size × at_size`` image and scale with the image area, so one
operating point serves 256² and 1024² predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ptxseg.metrics import dice_per_image


@dataclass(frozen=True)
class OperatingPoint:
    """Threshold and size rules; pixel counts refer to an ``at_size``² image."""

    threshold: float = 0.5
    min_component_px: int = 0
    min_mask_px: int = 0
    at_size: int = 1024
    top_threshold: float | None = None
    top_min_px: int = 0

    def scaled(self, px: int, shape: tuple[int, int]) -> float:
        """``px`` (at ``at_size``²) in pixels of an image of ``shape``."""
        return px * (shape[0] * shape[1]) / float(self.at_size * self.at_size)

    def to_dict(self) -> dict:
        return asdict(self)


def remove_small_components(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` (H×W bool) without its 8-connected components of fewer than ``min_px`` pixels."""
    if min_px <= 0 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]


def apply_operating_point(prob: np.ndarray, op: OperatingPoint) -> np.ndarray:
    """Binary masks (bool, same shape) from probabilities: ``H×W`` or ``N×H×W`` in ``[0, 1]``."""
    prob = np.asarray(prob)
    single = prob.ndim == 2
    probs = prob[None] if single else prob
    out = probs > op.threshold
    hw = probs.shape[-2:]
    min_comp, min_mask = op.scaled(op.min_component_px, hw), op.scaled(op.min_mask_px, hw)
    if op.top_threshold is not None:
        confident = (probs > op.top_threshold).reshape(len(probs), -1).sum(1)
        out[confident < op.scaled(op.top_min_px, hw)] = False
    for i in range(len(out)):
        out[i] = remove_small_components(out[i], min_comp)
        if min_mask > 0 and np.count_nonzero(out[i]) < min_mask:
            out[i] = False
    return out[0] if single else out


def tune_threshold_min_mask(
    probs: np.ndarray,
    truths: np.ndarray,
    thresholds: Sequence[float] = tuple(np.round(np.arange(0.1, 0.91, 0.05), 2)),
    min_mask_px: Sequence[int] = (0, 500, 1000, 2000, 3000, 5000),
    at_size: int = 1024,
) -> tuple[OperatingPoint, np.ndarray]:
    """The threshold × minimum-mask-size pair with the highest mean per-image Dice.

    Vectorised over images: for each threshold, per-image intersections and
    areas are counted once; the size rule only decides which masks are emptied.

    Args:
        probs: ``N×H×W`` probabilities; truths: ``N×H×W`` masks.

    Returns:
        The best operating point and the ``len(thresholds) × len(min_mask_px)`` grid of mean Dice.
    """
    probs = np.asarray(probs, dtype=np.float32)
    t = np.asarray(truths) != 0
    n = len(probs)
    flat_p, flat_t = probs.reshape(n, -1), t.reshape(n, -1)
    t_area = flat_t.sum(1)
    scale = probs.shape[-2] * probs.shape[-1] / float(at_size * at_size)
    grid = np.zeros((len(thresholds), len(min_mask_px)))
    for i, thr in enumerate(thresholds):
        pred = flat_p > thr
        p_area = pred.sum(1)
        inter = (pred & flat_t).sum(1)
        for j, mm in enumerate(min_mask_px):
            emptied = p_area < mm * scale
            pa = np.where(emptied, 0, p_area)
            it = np.where(emptied, 0, inter)
            total = pa + t_area
            grid[i, j] = np.where(total == 0, 1.0, 2.0 * it / np.maximum(total, 1)).mean()
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    return OperatingPoint(float(thresholds[i]), 0, int(min_mask_px[j]), at_size), grid


def mean_dice(probs: np.ndarray, truths: np.ndarray, op: OperatingPoint) -> float:
    """SIIM score (mean per-image Dice) of ``probs`` at ``op``."""
    return float(dice_per_image(apply_operating_point(probs, op), truths).mean())
