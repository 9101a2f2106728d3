"""The one preprocessing contract: a source radiograph → the network input, and probabilities back.

A model sees its training images through two steps, and so must every image at inference:

1. **store** (what ``ptxseg convert``/``ptxseg synth`` did to build the dataset): the decoded radiograph
   (float ``[0, 1]``, DICOM VOI as ``apply_voi`` says) is fitted into the ``stored_size²`` square —
   letterboxed (``aspect="pad"``: scaled by its long side, zero-padded, centred) or stretched — and
   quantised to the 16-bit steps of the stored PNG;
2. **to the network** (what the training dataset does with a stored image): the fixed lung ``crop`` (fractions
   of the stored square), a resize to ``size²`` (area averaging), and intensity normalisation (per-image
   min-max, then ``(x − mean) / std``).

:class:`Preprocessing` holds these settings. It is written into the model card when a model is trained and
used, unchanged, by the training dataset (step 2 on stored images, with augmentation between the crop and the
resize), :class:`ptxseg.infer.predictor.Predictor` (both steps on any radiograph), exported bundles and the service.
:meth:`Preprocessing.to_source` maps a network-grid probability map back onto the source image's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ptxseg.data.geometry import Geometry, resize_image, resize_mask
from ptxseg.errors import PtxsegError
from ptxseg.limits import MAX_NETWORK_SIZE

#: the largest stored (dataset) image side
MAX_STORED_SIZE = 8192


class CropSpec(BaseModel):
    """A fixed crop around the lung fields, as fractions of the stored image, plus padding (the UEfficientNet recipe)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, frozen=True)

    top: float = Field(0.08, ge=0, lt=1, description="First row, as a fraction of the height.")
    bottom: float = Field(0.78, gt=0, le=1, description="Last row, as a fraction of the height.")
    left: float = Field(0.10, ge=0, lt=1, description="First column, as a fraction of the width.")
    right: float = Field(0.85, gt=0, le=1, description="Last column, as a fraction of the width.")
    pad_px: int = Field(20, ge=0, le=1024, description="Pixels added on every side (at a 1024-pixel image; scaled with the image).")

    @model_validator(mode="after")
    def _ordered(self) -> CropSpec:
        if self.bottom <= self.top or self.right <= self.left:
            raise ValueError("crop needs top < bottom and left < right")
        return self


def crop_box(shape: tuple[int, int], crop: CropSpec | None) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the fixed lung crop of an image of ``shape`` (padding scaled from 1024 px);
    the whole image without a crop."""
    h, w = shape
    if crop is None:
        return 0, h, 0, w
    pad = round(crop.pad_px * max(h, w) / 1024)
    r0, r1 = max(0, round(crop.top * h) - pad), min(h, round(crop.bottom * h) + pad)
    c0, c1 = max(0, round(crop.left * w) - pad), min(w, round(crop.right * w) + pad)
    return r0, r1, c0, c1


def quantise16(image: np.ndarray) -> np.ndarray:
    """``image`` (float, ``[0, 1]``) as the 16-bit stored PNG holds it and reads back: float32 multiples of 1/65535."""
    return (np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16).astype(np.float32) / 65535.0).astype(np.float32)


def normalize(image: np.ndarray, mode: str = "minmax", mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    """Per-image min-max scaling to ``[0, 1]`` (``mode="minmax"``) or none (``"none"``), then ``(x − mean) / std``."""
    x = image.astype(np.float32, copy=False)
    if mode == "minmax":
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    elif mode != "none":
        raise PtxsegError("normalize.mode", f"must be minmax or none, got {mode!r}")
    return (x - mean) / std


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """An image (float32) resized to ``size × size``: area averaging (OpenCV ``INTER_AREA``)."""
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    return cv2.resize(image.astype(np.float32, copy=False), (size, size), interpolation=cv2.INTER_AREA)


def resize_mask_to(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/1 mask (uint8) resized to ``size × size`` by nearest neighbour (pixel centres aligned: OpenCV's plain
    ``INTER_NEAREST`` shifts by up to half a source pixel, off the image resized with ``INTER_AREA``)."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)  # pixel-centre aligned, as INTER_AREA


@dataclass(frozen=True)
class Frame:
    """Where a network input came from: the source image's shape, its placement in the stored square and the crop."""

    source_shape: tuple[int, int]
    geometry: Geometry
    box: tuple[int, int, int, int]  # crop box in the stored square


class Preprocessing(BaseModel):
    """How a source radiograph becomes the network input (see the module docstring); part of the model card."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, frozen=True)

    apply_voi: bool = Field(True, description="DICOM VOI LUT / window applied when decoding (convert --no-voi: false).")
    stored_size: int = Field(ge=32, le=MAX_STORED_SIZE, description="Side of the stored square the dataset's images were fitted into.")
    aspect: Literal["pad", "stretch"] = Field("pad", description="pad: letterbox (keep proportions); stretch: scale each axis.")
    crop: CropSpec | None = Field(None, description="Fixed lung crop of the stored square, before resizing.")
    size: int = Field(ge=32, le=MAX_NETWORK_SIZE, multiple_of=32, description="Network input side.")
    normalize: Literal["minmax", "none"] = Field("minmax", description="Per-image intensity scaling before mean/std.")
    mean: float = Field(0.5, description="Subtracted after scaling.")
    std: float = Field(0.5, gt=0, description="Divided by after subtracting the mean.")

    # ------------------------------------------------------------------ step 1: source → stored square

    def store(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """A decoded radiograph (float H×W in ``[0, 1]``) as the dataset stores it: ``stored_size²``, 16-bit steps."""
        stored, geometry = resize_image(image, self.stored_size, self.aspect)
        return quantise16(stored), geometry

    # ------------------------------------------------------------------ step 2: stored square → network

    def crop_stored(self, stored: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The lung crop of a stored image (the whole image without one) and its box."""
        box = crop_box(stored.shape, self.crop)
        r0, r1, c0, c1 = box
        return stored[r0:r1, c0:c1].astype(np.float32, copy=False), box

    def cropped_shape(self) -> tuple[int, int]:
        """(rows, cols) of a stored image after the crop: what augmentation works on."""
        r0, r1, c0, c1 = crop_box((self.stored_size, self.stored_size), self.crop)
        return r1 - r0, c1 - c0

    def finish(self, cropped: np.ndarray) -> np.ndarray:
        """A cropped (and possibly augmented) stored image → the normalised ``size²`` network input (float32)."""
        return normalize(resize_to(cropped, self.size), self.normalize, self.mean, self.std).astype(np.float32, copy=False)

    def from_stored(self, stored: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Step 2 alone, for an image already stored as the dataset holds it: ``(network input, crop box)``."""
        cropped, box = self.crop_stored(stored)
        return self.finish(cropped), box

    # ------------------------------------------------------------------ both, and back

    def network_input(self, image: np.ndarray) -> tuple[np.ndarray, Frame]:
        """Any decoded radiograph → ``(network input size² float32, Frame)``: exactly what training fed the network."""
        if image.ndim != 2:
            raise PtxsegError("image", f"expected a 2-D grayscale image, got shape {image.shape}")
        stored, geometry = self.store(image)
        x, box = self.from_stored(stored)
        return x, Frame(tuple(image.shape), geometry, box)  # type: ignore[arg-type]

    def mask_to_network(self, mask: np.ndarray, frame: Frame) -> np.ndarray:
        """A 0/1 mask on the source grid carried to the network grid (uint8 ``size²``), as the dataset carries its masks:
        stored with the image's geometry (a lesion never vanishes), cropped, resized by nearest neighbour."""
        stored = resize_mask(mask, frame.geometry, self.stored_size)
        r0, r1, c0, c1 = frame.box
        return resize_mask_to(np.ascontiguousarray(stored[r0:r1, c0:c1]), self.size)

    def to_source(self, prob: np.ndarray, frame: Frame) -> np.ndarray:
        """A ``size²`` map (probabilities, variances …) on the source image's pixel grid (bilinear; zero outside the
        crop and in the letterbox padding): the inverse of :meth:`network_input`."""
        r0, r1, c0, c1 = frame.box
        g = frame.geometry
        stored = np.zeros((self.stored_size, self.stored_size), np.float32)
        stored[r0:r1, c0:c1] = cv2.resize(prob.astype(np.float32, copy=False), (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
        rows, cols = g.inner_shape
        inner = stored[g.pad_top : g.pad_top + rows, g.pad_left : g.pad_left + cols]
        h, w = frame.source_shape
        if inner.shape == (h, w):
            return inner.copy()
        return cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)

    def describe(self) -> str:
        """One line for logs and model cards."""
        crop = (
            "no crop" if self.crop is None else f"crop {self.crop.top:g}-{self.crop.bottom:g} × {self.crop.left:g}-{self.crop.right:g}"
        )
        return (
            f"{'letterbox' if self.aspect == 'pad' else 'stretch'} into {self.stored_size}², {crop}, resize to {self.size}², "
            f"{self.normalize} then (x − {self.mean:g}) / {self.std:g}" + ("" if self.apply_voi else ", DICOM VOI ignored")
        )
