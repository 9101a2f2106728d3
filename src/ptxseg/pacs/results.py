"""The results of one radiograph as a PACS stores them: a DICOM SEG, an overlay Secondary Capture and a TID 1500
SR (each with UIDs determined by the source instance and the model version), and the findings as a few short
strings for the source instance's metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pydicom

from ptxseg.clinical.inputs import Radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError
from ptxseg.io.sc import burn_in, write_overlay_sc
from ptxseg.io.sr import write_report_sr
from ptxseg.tasks.predict import write_outputs

#: triage priority by the largest severity: 1 is read first
PRIORITY = {"severe": 1, "moderate": 2, "mild": 3, "none": 4}
#: the metadata ptxseg writes on a source instance (Orthanc "UserMetadata" names; docs/pacs.md)
METADATA = (
    "ptxseg-status",
    "ptxseg-probability",
    "ptxseg-side",
    "ptxseg-ratio",
    "ptxseg-severity",
    "ptxseg-priority",
    "ptxseg-qc",
    "ptxseg-model",
)


def orthanc_user_metadata(first_index: int = 4101) -> dict[str, int]:
    """The ``"UserMetadata"`` entries Orthanc's configuration must declare for ptxseg (name → index ≥ 1024)."""
    return {name: first_index + k for k, name in enumerate(METADATA)}


@dataclass
class Results:
    """The result document and the three DICOM files written for one radiograph."""

    doc: dict[str, Any]
    seg: Path
    sc: Path
    sr: Path


def derive(pipeline: ClinicalPipeline, rad: Radiograph, folder: Path) -> Results:
    """Analyse ``rad`` (a DICOM radiograph) and write its SEG, SC and SR under ``folder``."""
    if rad.dataset is None:
        raise PtxsegError(rad.path, "not a DICOM radiograph: a PACS result needs the source's identifiers")
    doc, _ = write_outputs(pipeline, rad, "result", folder, seg=True, overlay=True)
    version, name = pipeline.model_info["version"], pipeline.model_info["name"]
    overlay = cv2.cvtColor(cv2.imread(str(folder / doc["outputs"]["overlay"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    warnings = doc.get("model_warnings") or []
    sc = write_overlay_sc(folder / "result_sc.dcm", rad.dataset, burn_in(overlay, warnings), version, warnings=warnings)
    seg_path = folder / doc["outputs"]["seg"]
    sr = write_report_sr(folder / "result_sr.dcm", rad.dataset, pydicom.dcmread(seg_path), doc, version, name)
    return Results(doc, seg_path, sc, sr)


def findings(doc: dict[str, Any]) -> dict[str, str]:
    """The source instance's metadata for an analysed radiograph (every value a short string)."""
    sides = [s for s in ("right", "left") if (doc[s].get("area_px") or 0) > 0]
    if not sides and doc["pneumothorax"]["present"]:
        sides = ["unassigned"]
    ratios = [doc[s]["ratio_pct"] for s in ("right", "left") if doc[s].get("ratio_pct") is not None]
    severity = doc.get("max_severity") or "unknown"
    qc = doc["qc"]
    verdict = qc["verdict"] if qc.get("triage_eligible") is not False else f"{qc['verdict']}; not fit for triage"
    flags = [*qc.get("warnings", []), *(qc.get("flags") or [])]
    return {
        "ptxseg-status": "analysed",
        "ptxseg-probability": f"{doc['pneumothorax']['probability']:.4f}",
        "ptxseg-side": "+".join(sides) if sides else "none",
        "ptxseg-ratio": f"{max(ratios):.1f}" if ratios else "",
        "ptxseg-severity": severity,
        "ptxseg-priority": str(PRIORITY.get(severity, 3 if doc["pneumothorax"]["present"] else 4)),
        "ptxseg-qc": verdict + (f": {', '.join(flags)}" if flags else ""),
        "ptxseg-model": doc["model"]["version"],
    }
