"""The clinical answer for one radiograph: is there a pneumothorax, where, which side, how big, how sure.

Two phases, as in the published method: (I) a lung-field model gives the full
lung fields, split into the patient's right and left lung
(:func:`ptxseg.measure.lung_sides.split_lungs`); (II) the pneumothorax model's mask (its
tuned operating point applied) is sized per side against them
(:func:`ptxseg.measure.quantify.quantify`). Everything is computed in the input
image's own pixel grid, so a DICOM's PixelSpacing applies unchanged and the
DICOM SEG has the source's full resolution.

Not a medical device: phantom-trained models say nothing about patients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from ptxseg.artifacts.card import synthetic_warning, training_domains
from ptxseg.artifacts.shipped import find_lung_model, resolve_model, shipped_lung_model
from ptxseg.clinical.inputs import Radiograph
from ptxseg.data.qc import image_warnings, qc_verdict
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Prediction, Predictor
from ptxseg.measure.lung_sides import LungFields, split_lungs
from ptxseg.measure.quality import GATE_FLAGS, quality_gate
from ptxseg.measure.quantify import SEVERITY_BOUNDS, SIDES, area_mm2, quantify

SEVERITY_RANK = {None: -1, "none": 0, "mild": 1, "moderate": 2, "severe": 3}
FORMAT = "ptxseg-prediction/1"


def _first_warning(cards: list) -> str | None:
    """:func:`ptxseg.artifacts.card.synthetic_warning` of the first ensemble member trained on synthetic data."""
    return next((w for card in cards if (w := synthetic_warning(card))), None)


@dataclass
class Analysis:
    """What :meth:`ClinicalPipeline.analyse` found; ``report`` is the JSON document."""

    mask: np.ndarray  # bool H×W, the input's grid
    lungs: LungFields | None
    prediction: Prediction
    report: dict[str, Any]


class ClinicalPipeline:
    """Pneumothorax model + optional lung-field model → mask, lung fields, per-side quantification, uncertainty.

    Args:
        model: run directory, bundle or ensemble file of the pneumothorax model.
        lungs: lung-field model; ``None``: :func:`find_lung_model` (a bundle's own, else the shipped real one);
            ``False`` disables phase I.
        tta: TTA transforms (default: the model's).
        device: torch device.
        bounds: severity boundaries in % of the lung field.
        mc_dropout: Monte-Carlo dropout passes per TTA member (models with dropout only; 0: off).
        threads: ONNX Runtime threads of bundle models (default: one per core).
    """

    def __init__(
        self,
        model: str | PathLike[str],
        lungs: str | PathLike[str] | None | bool = None,
        tta: list[str] | None = None,
        device: str = "cpu",
        bounds: tuple[float, float] = SEVERITY_BOUNDS,
        mc_dropout: int = 0,
        threads: int | None = None,
    ) -> None:
        model = resolve_model(model)
        self.model_path = model
        self.ptx = Predictor([model], tta=tta, device=device, mc_dropout=mc_dropout, threads=threads)
        if self.ptx.target != "pneumothorax":
            raise PtxsegError(model, f"is a {self.ptx.target} model, not a pneumothorax model")
        self.op = self.ptx.operating_point
        self.bounds = bounds
        self.lung_reason = None
        lung_path = None if lungs is False else (find_lung_model(model) if lungs is None else resolve_model(lungs))
        self.lungs = None
        if lung_path is None:
            self.lung_reason = "no lung-field model (pass --lungs LUNG_MODEL; none ships with this installation)"
        else:
            self.lungs = Predictor([lung_path], device=device, threads=threads)
            if self.lungs.target != "lungs":
                raise PtxsegError(lung_path, "is not a lung-field model (train one with the lungs_unet_r34_256 recipe)")
            self.lung_op = self.lungs.operating_point
        warnings = {"model": _first_warning(self.ptx.cards), "lung_model": None}
        if self.lungs is not None:
            warnings["lung_model"] = _first_warning(self.lungs.cards)
        #: one sentence per model trained on synthetic data: every per-film output repeats them
        self.warnings = [w for w in warnings.values() if w]
        self.model_info = {
            "path": str(self.model_path),
            "name": self.ptx.card.model.name,
            "encoder": self.ptx.card.model.encoder,
            "recipe": self.ptx.card.recipe,
            "version": self.ptx.version,
            "backend": self.ptx.backend,
            "tta": self.ptx.tta,
            "ensemble_members": len(self.ptx.sources),
            "training_domains": training_domains(self.ptx.card),
            "warning": warnings["model"],
        }
        self.lung_info = (
            None
            if self.lungs is None
            else {
                "path": str(lung_path),
                "name": self.lungs.card.model.name,
                "version": self.lungs.version,
                "shipped": lung_path == shipped_lung_model(),
                "training_domains": training_domains(self.lungs.card),
                "warning": warnings["lung_model"],
            }
        )

    def analyse(self, rad: Radiograph) -> Analysis:
        """The full answer for one radiograph (see ``docs/clinical-outputs.md`` for every field)."""
        t = {}
        t0 = time.perf_counter()
        pred = self.ptx.predict([rad.image])[0]
        mask = pred.mask(self.op)
        t["pneumothorax_s"] = time.perf_counter() - t0
        fields = None
        if self.lungs is not None:
            t1 = time.perf_counter()
            fields = split_lungs(self.lungs.predict([rad.image])[0].mask(self.lung_op))
            t["lungs_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        px_mm2 = None if rad.spacing_mm is None else rad.spacing_mm[0] * rad.spacing_mm[1]
        total = int(mask.sum())
        if fields is not None and fields.found:
            q = quantify(mask, fields.right, fields.left, rad.spacing_mm, self.bounds)
            sides = {s: q[s] for s in SIDES}
            unassigned, lesions = q["unassigned_px"], q["lesions"]
        else:
            empty = dict.fromkeys(("area_px", "area_mm2", "lung_area_px", "lung_area_mm2", "ratio_pct", "severity", "lesions"))
            sides = {s: dict(empty) for s in SIDES}
            unassigned, lesions = None, None
        t["quantify_s"] = time.perf_counter() - t2
        lung_notes = (fields.notes if fields is not None else [self.lung_reason]) or []
        if fields is not None and not fields.found:
            lung_notes = [*lung_notes, "per-side values are null: no lung field to size against"]
        report = {
            "format": FORMAT,
            "input": input_block(rad),
            "qc": qc_block(rad, fields),
            "model": self.model_info,
            "lung_model": self.lung_info,
            "model_warnings": list(self.warnings),
            "operating_point": self.op.to_dict(),
            "pneumothorax": {
                "present": bool(total > 0),
                "probability": float(pred.score),
                "probability_source": "classifier head" if pred.cls_prob is not None else "maximum pixel probability",
                "area_px": total,
                "area_mm2": area_mm2(total, px_mm2),
            },
            "right": sides["right"],
            "left": sides["left"],
            "max_severity": max((sides[s]["severity"] for s in SIDES), key=lambda v: SEVERITY_RANK[v]),
            "unassigned_px": unassigned,
            "lesions": lesions,
            "lungs": {"found": bool(fields is not None and fields.found), "notes": lung_notes},
            "uncertainty": {
                **uncertainty(pred, mask),
                "mc_dropout_passes": self.ptx.mc_dropout if self.ptx.uses_mc_dropout else 0,
            },
            "timings_s": t,
        }
        return Analysis(mask, fields, pred, report)


def input_block(rad: Radiograph) -> dict[str, Any]:
    """The ``input`` block of a result document: path, id, kind, size, pixel spacing and the DICOM identifiers."""
    return {
        "path": str(rad.path),
        "id": rad.id,
        "kind": "dicom" if rad.dataset is not None else "image",
        "rows": int(rad.image.shape[0]),
        "columns": int(rad.image.shape[1]),
        "pixel_spacing_mm": None if rad.spacing_mm is None else list(rad.spacing_mm),
        **({"decoded_scale": round(rad.decoded_scale, 6)} if rad.decoded_scale != 1.0 else {}),
        **rad.identifiers,
    }


def qc_block(rad: Radiograph, fields: LungFields | None) -> dict[str, Any]:
    """The ``qc`` block of a result document: the reader's warnings, then the quality gate's flags and triage
    eligibility (decided from the lung ``fields``; ``triage_eligible`` null when there are none)."""
    warnings = image_warnings(rad.warnings, rad.image.shape)
    gate = quality_gate(None if fields is None else fields.right, None if fields is None else fields.left, warnings)
    block = qc_verdict(warnings)
    if gate.eligible is False:
        block["verdict"] = "warning"
    block.update(
        flags=gate.flags,
        triage_eligible=gate.eligible,
        triage_reasons=gate.reasons,
        measures=gate.measures,
    )
    block["meaning"].update({f: GATE_FLAGS[f] for f in gate.flags})
    if rad.header_problems:
        block["header_values_dropped"] = dict(rad.header_problems)
    return block


def uncertainty(pred: Prediction, mask: np.ndarray) -> dict[str, Any]:
    """Disagreement of the TTA × ensemble members: pixel variance inside the predicted mask (None when it is
    empty) and along its uncertain band (pixels whose mean probability is within 0.25 of 0.5), and the spread
    (standard deviation, range) of the members' image-level probabilities."""
    scores = np.asarray(pred.member_scores, dtype=np.float64)
    band = np.abs(pred.prob - 0.5) < 0.25
    return {
        "members": int(scores.size),
        "pixel_variance_in_mask": float(pred.variance[mask].mean()) if mask.any() else None,
        "pixel_variance_uncertain_band": float(pred.variance[band].mean()) if band.any() else None,
        "probability_std": float(scores.std()),
        "probability_range": [float(scores.min()), float(scores.max())],
    }
