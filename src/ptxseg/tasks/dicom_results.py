"""What a PACS worker (``ptxseg triage``, ``ptxseg listen``) does with one DICOM instance: whether it is a
radiograph to analyse at all, whether its header lets it be triaged, and its results as a PACS stores them — a
DICOM SEG, an overlay Secondary Capture and a TID 1500 SR, each with UIDs determined by the source instance and
the model version (a repeated analysis replaces, never adds)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
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
from ptxseg.measure.quality import GATE_FLAGS, HEADER_FLAGS
from ptxseg.tasks.predict import write_outputs

#: SOP classes that are never radiographs to analyse (ptxseg's own outputs among them)
DERIVED_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
}


def passed_over(tags: Any, modalities: Iterable[str]) -> str | None:
    """Why an instance with these header ``tags`` (a pydicom dataset or a tag-name mapping) is not a radiograph
    to analyse — a SEG or SR, an object ptxseg stored, another modality — or None when it is one."""
    sop_class = str(tags.get("SOPClassUID", ""))
    if sop_class in DERIVED_CLASSES:
        return DERIVED_CLASSES[sop_class]
    if str(tags.get("Manufacturer", "")) == "ptxseg":
        return "stored by ptxseg"
    modality = str(tags.get("Modality", "")).upper()
    if modality not in {m.upper() for m in modalities}:
        return f"modality {modality or 'missing'}"
    return None


def header_refusal(rad: Radiograph) -> str | None:
    """Why the quality gate refuses ``rad`` by its header alone (lateral view, not a chest …), or None."""
    refused = [w for w in rad.warnings if w in HEADER_FLAGS]
    return "; ".join(GATE_FLAGS[HEADER_FLAGS[w]] for w in refused) or None


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


def inject_fault(env: str, point: str, target: str | None) -> None:
    """Kill this process with SIGKILL — as the out-of-memory killer or a power cut would — when the environment
    variable ``env`` names ``point`` (and, after ``@``, this instance's ``target`` id, or nothing for every one).
    The crash tests use it to reach windows a timed kill cannot; unset, it does nothing."""
    wanted = os.environ.get(env)
    if not wanted:
        return
    where, _, only = wanted.partition("@")
    if where == point and only in ("", target):
        os.kill(os.getpid(), signal.SIGKILL)
