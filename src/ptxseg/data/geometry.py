"""Resize radiographs and masks to the square stored size, aspect handled explicitly.

``pad`` (default) scales the long side to ``size`` and pads the short side
with zeros, centred, so anatomy keeps its proportions; ``stretch`` scales each
axis independently. The :class:`Geometry` of each item is stored in the
manifest so masks can be mapped back to the source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Aspect = Literal["pad", "stretch"]
ASPECTS: tuple[str, ...] = ("pad", "stretch")


@dataclass(frozen=True)
class Geometry:
    """How a source image of ``orig_rows × orig_cols`` maps to the stored square.

    ``stored = source * scale + pad`` along each axis (pixel units).
    """

    orig_rows: int
    orig_cols: int
    scale_row: float
    scale_col: float
    pad_top: int
    pad_left: int

    @classmethod
    def fit(cls, rows: int, cols: int, size: int, aspect: Aspect) -> Geometry:
        if aspect == "stretch":
            return cls(rows, cols, size / rows, size / cols, 0, 0)
        scale = size / max(rows, cols)
        new_rows, new_cols = round(rows * scale), round(cols * scale)
        return cls(rows, cols, scale, scale, (size - new_rows) // 2, (size - new_cols) // 2)

    @property
    def inner_shape(self) -> tuple[int, int]:
        """(rows, cols) of the scaled image before padding."""
        return round(self.orig_rows * self.scale_row), round(self.orig_cols * self.scale_col)


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = shape
    if array.shape[:2] == (rows, cols):
        return array.copy()
    shrinking = rows * cols < array.shape[0] * array.shape[1]
    return cv2.resize(array, (cols, rows), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _place(inner: np.ndarray, geom: Geometry, size: int) -> np.ndarray:
    out = np.zeros((size, size), dtype=inner.dtype)
    r, c = inner.shape
    out[geom.pad_top : geom.pad_top + r, geom.pad_left : geom.pad_left + c] = inner
    return out


def resize_image(image: np.ndarray, size: int, aspect: Aspect = "pad") -> tuple[np.ndarray, Geometry]:
    """Resize a float32 H×W image to ``size × size`` (area averaging when shrinking)."""
    geom = Geometry.fit(image.shape[0], image.shape[1], size, aspect)
    inner = _resize(image.astype(np.float32, copy=False), geom.inner_shape)
    return _place(inner, geom, size), geom


def resize_mask(mask: np.ndarray, geom: Geometry, size: int) -> np.ndarray:
    """Resize a 0/1 mask with the image's geometry; returns uint8 0/1.

    Pixels are kept where at least half the area they cover is foreground.
    A non-empty mask never vanishes: if thresholding empties it (a lesion
    smaller than one stored pixel), the stored pixels of highest coverage are
    kept, so a positive image stays positive at any size.
    """
    inner = _resize(mask.astype(np.float32), geom.inner_shape)
    out = inner >= 0.5
    if not out.any() and mask.any():
        out = inner >= inner.max()
    return _place(out.astype(np.uint8), geom, size)


def restore_mask(mask: np.ndarray, geom: Geometry) -> np.ndarray:
    """The inverse of :func:`resize_mask`: a stored-size 0/1 mask back on the source image's pixel grid (uint8)."""
    r, c = geom.inner_shape
    inner = mask[geom.pad_top : geom.pad_top + r, geom.pad_left : geom.pad_left + c].astype(np.uint8)
    return cv2.resize(inner, (geom.orig_cols, geom.orig_rows), interpolation=cv2.INTER_NEAREST_EXACT)  # pixel centres aligned
