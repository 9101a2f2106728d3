"""From probability maps to masks: operating points (pure numpy + OpenCV labelling).

An operating point is a probability threshold, a minimum connected-component
size and a minimum total mask size (below which the mask is emptied, the rule
that decides "no pneumothorax" on most SIIM negatives), optionally with the
"triplet" rule of the SIIM 1st-place solution: the mask is emptied unless at
least ``top_min_px`` pixels exceed ``top_threshold``; otherwise the pixels
above ``threshold`` (the bottom threshold) are kept. With ``cls_threshold``
the mask is also emptied when the model's classifier head gives the image a
probability below it. Pixel counts are given
for an ``at_size × at_size`` image and scale with the image area, so one
operating point serves 256² and 1024² predictions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ptxseg.errors import PtxsegError


@dataclass(frozen=True)
class OperatingPoint:
    """Threshold and size rules; pixel counts refer to an ``at_size``² image."""

    threshold: float = 0.5
    min_component_px: int = 0
    min_mask_px: int = 0
    at_size: int = 1024
    top_threshold: float | None = None
    top_min_px: int = 0
    cls_threshold: float | None = None

    def scaled(self, px: int, shape: tuple[int, int]) -> float:
        """``px`` (at ``at_size``²) in pixels of an image of ``shape``."""
        return px * (shape[0] * shape[1]) / float(self.at_size * self.at_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object, where: str = "operating point") -> OperatingPoint:
        """An operating point from a mapping read from a file, checked: known keys, finite probabilities in
        ``[0, 1]``, non-negative pixel counts, ``at_size`` ≥ 1. Raises :class:`PtxsegError` naming ``where``."""
        if not isinstance(values, dict):
            raise PtxsegError(where, f"operating point must be a mapping, got {type(values).__name__}", code="bad_model")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise PtxsegError(where, f"operating point has unknown keys {sorted(unknown)}", code="bad_model")
        out = {}
        for key, value in values.items():
            optional_prob = key in ("top_threshold", "cls_threshold")
            if optional_prob and value is None:
                out[key] = None
                continue
            if key in ("threshold", "top_threshold", "cls_threshold"):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
                if not ok:
                    raise PtxsegError(where, f"operating point {key} must be a probability in [0, 1], got {value!r}", code="bad_model")
                out[key] = float(value)
            else:
                lowest = 1 if key == "at_size" else 0
                if not (isinstance(value, int) and not isinstance(value, bool) and value >= lowest):
                    raise PtxsegError(where, f"operating point {key} must be an integer >= {lowest}, got {value!r}", code="bad_model")
                out[key] = value
        return cls(**out)


def remove_small_components(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` (H×W bool) without its 8-connected components of fewer than ``min_px`` pixels."""
    if min_px <= 0 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]


def apply_operating_point(prob: np.ndarray, op: OperatingPoint, cls_prob: float | np.ndarray | None = None) -> np.ndarray:
    """Binary masks (bool, same shape) from probabilities: ``H×W`` or ``N×H×W`` in ``[0, 1]``.

    ``cls_prob`` is the classifier head's image probability (a float, or ``N``
    values); it is required when ``op.cls_threshold`` is set and ignored otherwise.
    """
    prob = np.asarray(prob)
    single = prob.ndim == 2
    probs = prob[None] if single else prob
    out = probs > op.threshold
    hw = probs.shape[-2:]
    if op.cls_threshold is not None:
        if cls_prob is None:
            raise PtxsegError(
                "operating point", "cls_threshold is set but there is no classifier-head probability (model without a head?)"
            )
        out[np.atleast_1d(np.asarray(cls_prob, dtype=np.float64)) < op.cls_threshold] = False
    min_comp, min_mask = op.scaled(op.min_component_px, hw), op.scaled(op.min_mask_px, hw)
    if op.top_threshold is not None:
        confident = (probs > op.top_threshold).reshape(len(probs), -1).sum(1)
        out[confident < op.scaled(op.top_min_px, hw)] = False
    for i in range(len(out)):
        out[i] = remove_small_components(out[i], min_comp)
        if min_mask > 0 and np.count_nonzero(out[i]) < min_mask:
            out[i] = False
    return out[0] if single else out
