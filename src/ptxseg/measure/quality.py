"""The quality gate before triage: is this radiograph fit to be triaged for pneumothorax? (pure numpy)

Commercial pneumothorax triage products refuse images whose lung fields are not fully in view. The gate decides
per input from the patient's right and left lung fields (source pixel grid, from the lung-field model) and the
reader's header warnings: a frontal chest view, both lungs found, each lung's share of the image plausible,
neither lung cut off at the image border (apex, costophrenic angle, lateral edge), no gross rotation or tilt
(the two lungs' area ratio, the tilt of the line through their centroids, the height difference of their apices).

The default limits come from the 1,160 human lung-field annotations of ``../shared/data/lungs_real`` (1,070
paediatric and 90 adult radiographs): every limit lies outside their 0.5–99.5 % range, so a typical well-taken
film passes and only a clear departure is flagged (``docs/lungs.md`` lists the measured percentiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: flag → what it means (the ``triage_reasons`` of a prediction say which apply)
GATE_FLAGS = {
    "not_frontal": "the header says this is not a frontal (PA/AP) view",
    "non_chest": "the header names a body part other than the chest",
    "no_lung_model": "no lung-field model: the gate cannot look at the lungs",
    "lung_missing": "a lung field was not found",
    "lung_area_implausible": "a lung field covers an implausible share of the image",
    "lung_cut_off": "a lung field reaches the image border (apex, costophrenic angle or lateral edge out of view)",
    "rotated": "the lung fields are markedly asymmetric or tilted (patient rotation, or a non-standard projection)",
}
#: header QC warnings that make an input ineligible, and the gate flag each becomes
HEADER_FLAGS = {"lateral_view": "not_frontal", "non_chest_body_part": "non_chest"}


@dataclass(frozen=True)
class GateLimits:
    """Limits of the quality gate (shares of the image's area or side; degrees).

    Measured on the 1,160 ``lungs_real`` annotations (0.5 % / 99.5 % quantiles): one lung's share of the image
    0.095 / 0.291 (min 0.085, max 0.332); smaller / larger lung area 0.644 (min 0.616); tilt of the centroid line
    −8.8° / 14.2°; apex height difference 0.077 of the image height; lung pixels on an image edge: median 0.
    """

    min_lung_share: float = 0.04
    max_lung_share: float = 0.45
    min_area_ratio: float = 0.5
    max_tilt_deg: float = 20.0
    max_apex_offset: float = 0.12
    max_edge_share: float = 0.02  # lung pixels along one image edge, as a share of that edge's length


@dataclass
class QualityGate:
    """The gate's decision: ``eligible`` (None when it could not look at the lungs), ``flags`` (keys of
    :data:`GATE_FLAGS`), one readable ``reason`` per flag, and the ``measures`` they were decided on."""

    eligible: bool | None
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    measures: dict = field(default_factory=dict)


def _edges(mask: np.ndarray) -> dict[str, float]:
    """Share of each image edge (top, bottom, left, right column/row) covered by ``mask``."""
    h, w = mask.shape
    return {
        "top": float(mask[0].sum()) / w,
        "bottom": float(mask[-1].sum()) / w,
        "left": float(mask[:, 0].sum()) / h,
        "right": float(mask[:, -1].sum()) / h,
    }


def quality_gate(
    right: np.ndarray | None,
    left: np.ndarray | None,
    header_warnings: list[str] | tuple[str, ...] = (),
    limits: GateLimits = GateLimits(),
) -> QualityGate:
    """Decide whether a radiograph is fit for triage.

    Args:
        right, left: the patient's right and left lung fields (bool H×W, the source image's grid; the right lung
            on the image's left), or None when no lung-field model ran.
        header_warnings: the reader's QC warnings (``lateral_view``, ``non_chest_body_part`` … of
            :mod:`ptxseg.data.qc`); those in :data:`HEADER_FLAGS` make the input ineligible by themselves.
        limits: the thresholds (:class:`GateLimits`).

    Returns:
        A :class:`QualityGate`; ``eligible`` is False when any flag is raised, None when the lungs could not be
        looked at and the header raised nothing, else True.
    """
    flags: list[str] = []
    reasons: list[str] = []

    def flag(name: str, reason: str) -> None:
        if name not in flags:
            flags.append(name)
        reasons.append(reason)

    for warning in header_warnings:
        if warning in HEADER_FLAGS:
            flag(HEADER_FLAGS[warning], GATE_FLAGS[HEADER_FLAGS[warning]])
    if right is None or left is None:
        if not flags:
            return QualityGate(None, ["no_lung_model"], [GATE_FLAGS["no_lung_model"]], {})
        return QualityGate(False, flags, reasons, {})

    right, left = np.asarray(right, bool), np.asarray(left, bool)
    h, w = right.shape
    measures: dict = {}
    missing = [side for side, m in (("right", right), ("left", left)) if not m.any()]
    for side in missing:
        flag("lung_missing", f"the {side} lung field was not found")
    for side, m in (("right", right), ("left", left)):
        if side in missing:
            continue
        share = float(m.mean())
        measures[f"{side}_share"] = round(share, 4)
        if not limits.min_lung_share <= share <= limits.max_lung_share:
            flag(
                "lung_area_implausible",
                f"the {side} lung covers {share:.1%} of the image (plausible {limits.min_lung_share:.0%}–{limits.max_lung_share:.0%})",
            )
        edges = _edges(m)
        measures[f"{side}_edges"] = {k: round(v, 4) for k, v in edges.items()}
        cut = [k for k, v in edges.items() if v > limits.max_edge_share]
        if cut:
            flag("lung_cut_off", f"the {side} lung reaches the {' and '.join(cut)} edge of the image")
    if not missing:
        a_r, a_l = int(right.sum()), int(left.sum())
        ratio = min(a_r, a_l) / max(a_r, a_l)
        (ry, rx), (ly, lx) = (np.argwhere(m).mean(0) for m in (right, left))
        tilt = float(np.degrees(np.arctan2(ly - ry, lx - rx)))  # 0° when the centroids are level, right lung on the left
        apex = abs(float(np.argmax(right.any(1)) - np.argmax(left.any(1)))) / h
        measures.update(area_ratio=round(ratio, 4), tilt_deg=round(tilt, 2), apex_offset=round(apex, 4))
        if ratio < limits.min_area_ratio:
            flag("rotated", f"one lung field is {ratio:.0%} of the other's area (expected ≥ {limits.min_area_ratio:.0%})")
        if abs(tilt) > limits.max_tilt_deg:
            flag("rotated", f"the line through the lung centroids is tilted {tilt:+.0f}° (limit ±{limits.max_tilt_deg:.0f}°)")
        if apex > limits.max_apex_offset:
            flag("rotated", f"the lung apices differ in height by {apex:.0%} of the image (limit {limits.max_apex_offset:.0%})")
    return QualityGate(not flags, flags, reasons, measures)
