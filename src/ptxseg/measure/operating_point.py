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

from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ptxseg.errors import PtxsegError
from ptxseg.limits import MAX_GRID_SIDE

#: a probability of the operating point: one set of bounds for configs, cards, bundles, ensembles and tune
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class OperatingPoint(BaseModel):
    """Threshold and size rules; pixel counts refer to an ``at_size``² image. The one typed operating point of
    ptxseg: configs (``postprocess``, which adds ``tune``), model cards, bundles, ensemble files, ``ptxseg tune``
    and ``predict`` all read and write this model. Immutable and hashable; unknown keys, non-finite or
    out-of-range values are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)

    threshold: Probability = Field(0.5, description="Probability threshold.")
    min_component_px: int = Field(0, ge=0, description="Connected components smaller than this are removed (8-connectivity).")
    min_mask_px: int = Field(0, ge=0, description="A mask with fewer pixels than this is emptied.")
    at_size: int = Field(
        1024, ge=1, le=MAX_GRID_SIDE, description="Pixel counts above refer to an at_size × at_size image; they scale with area."
    )
    top_threshold: Probability | None = Field(
        None, description="Triplet rule: empty the mask unless top_min_px pixels exceed this (threshold is the bottom one)."
    )
    top_min_px: int = Field(0, ge=0, description="Triplet rule: pixels that must exceed top_threshold.")
    cls_threshold: Probability | None = Field(
        None, description="Empty the mask when the classifier head's probability is below this (needs model.aux_classifier)."
    )

    @field_validator("min_component_px", "min_mask_px", "at_size", "top_min_px", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        # a count: an integer (numpy's included), never a bool or a float that happens to be whole
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"must be an integer, got {value!r}")
        return int(value)

    @field_validator("threshold", "top_threshold", "cls_threshold", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float | np.integer | np.floating)):
            raise ValueError(f"must be a probability in [0, 1], got {value!r}")
        return None if value is None else float(value)

    def scaled(self, px: int, shape: tuple[int, int]) -> float:
        """``px`` (at ``at_size``²) in pixels of an image of ``shape``."""
        return px * (shape[0] * shape[1]) / float(self.at_size * self.at_size)

    def to_dict(self) -> dict:
        """The operating point as a plain mapping (every field, JSON-ready)."""
        return {name: getattr(self, name) for name in OperatingPoint.model_fields}

    @classmethod
    def from_dict(cls, values: object, where: str = "operating point") -> OperatingPoint:
        """An operating point from a mapping read from a file, checked (see the class docstring).

        Raises:
            PtxsegError: naming ``where`` and every problem (code ``bad_model``).
        """
        if isinstance(values, OperatingPoint):
            return OperatingPoint(**values.to_dict())  # a config's point (with ``tune``) becomes the point itself
        if not isinstance(values, dict):
            raise PtxsegError(where, f"operating point must be a mapping, got {type(values).__name__}", code="bad_model")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise PtxsegError(where, f"operating point {point_problems(exc)}", code="bad_model") from None


def point_field(value: Any) -> OperatingPoint:
    """A pydantic ``mode="before"`` validator body for a field holding an operating point (cards, bundles): the
    value as an :class:`OperatingPoint` (a subclass such as the config's, with ``tune``, reduced to the point), or
    a ``ValueError`` with :func:`point_problems`' words."""
    try:
        return OperatingPoint.from_dict(value)
    except PtxsegError as exc:
        raise ValueError(exc.reason) from None


def point_problems(exc: ValidationError) -> str:
    """The problems of a refused operating point, one clause each (``threshold must be a probability …``)."""
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            out.append(f"has unknown key {key!r}")
        elif key in ("threshold", "top_threshold", "cls_threshold"):
            out.append(f"{key} must be a probability in [0, 1], got {err.get('input')!r}")
        else:
            out.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(dict.fromkeys(out))


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
