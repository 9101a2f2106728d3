"""``ptxseg predict`` as a library: a batch of radiographs → per-image JSON, mask, overlay, DICOM SEG, summary.csv.

Per input, under ``out``: ``<id>_mask.png`` (0/255, the input's grid),
``<id>_overlay.png``, ``<id>_seg.dcm`` (``seg=True``, DICOM inputs), and last
``<id>.json`` — each written to a temporary name and renamed, so an input whose
JSON exists and lists outputs that all exist is complete and is skipped on a
re-run (resume; ids come from file names and DICOM headers, so complete inputs are
not decoded again). A bad input is reported in ``summary.csv`` with its reason and
the batch goes on. ``summary.csv`` (triage order: worst severity, then highest
probability first; failures last) is rewritten at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptxseg.clinical.explain import cam_for_image
from ptxseg.clinical.inputs import Radiograph
from ptxseg.clinical.pipeline import SEVERITY_RANK, Analysis, ClinicalPipeline
from ptxseg.clinical.render import cam_overlay, clinical_overlay
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.images import write_png
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import is_safe_name, under
from ptxseg.io.seg import write_seg
from ptxseg.tasks.batch import BASE_COLUMNS, base_row, run_batch

SUMMARY_COLUMNS = [
    *BASE_COLUMNS,
    "present",
    "probability",
    "max_severity",
    "ratio_right_pct",
    "severity_right",
    "ratio_left_pct",
    "severity_left",
    "area_px",
    "probability_std",
    "model_warning",
    "seconds",
]


def complete_outputs(
    out: Path, image_id: str, seg: bool, overlay: bool = True, cam: bool = False, models: tuple = ()
) -> dict[str, Any] | None:
    """The stored JSON of ``image_id`` if it and every output it lists exist, it has the outputs asked for now,
    and it was made by the same models (``models``: the pneumothorax and lung model versions and their warnings,
    when given)."""
    path = under(out, f"{image_id}.json")
    if not path.is_file():
        return None
    try:
        doc = read_json_object(path)
    except PtxsegError:  # unreadable, tampered or half-made by another tool: redo the input
        return None
    made_by = (doc.get("model", {}).get("version"), (doc.get("lung_model") or {}).get("version"), doc.get("model_warnings"))
    if models and made_by != models:  # other models, or written before outputs carried the models' warnings
        return None
    outputs = doc.get("outputs", {})
    if not isinstance(outputs, dict) or not all(name is None or is_safe_name(name) for name in outputs.values()):
        return None
    wanted = {"overlay": overlay, "cam": cam, "seg": seg and doc.get("input", {}).get("kind") == "dicom"}
    if any(asked and not outputs.get(name) for name, asked in wanted.items()):
        return None
    if not all((out / name).is_file() for name in outputs.values() if name):
        return None
    return doc


def summary_row(path: Path, image_id: str, status: str, reason: str, doc: dict | None, seconds: float | None) -> dict:
    row = base_row(SUMMARY_COLUMNS, path, image_id, status, reason, doc, seconds)
    if doc is not None:
        p = doc["pneumothorax"]
        row.update(
            present=p["present"],
            probability=p["probability"],
            max_severity=doc["max_severity"],
            ratio_right_pct=doc["right"]["ratio_pct"],
            severity_right=doc["right"]["severity"],
            ratio_left_pct=doc["left"]["ratio_pct"],
            severity_left=doc["left"]["severity"],
            area_px=p["area_px"],
            probability_std=doc["uncertainty"]["probability_std"],
            model_warning="; ".join(doc.get("model_warnings") or []),
        )
    return row


def predict_batch(
    pipeline: ClinicalPipeline,
    inputs: list[Path],
    out: str | PathLike[str],
    seg: bool = False,
    overlay: bool = True,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    on_result: Callable[[dict], None] | None = None,
    cam: bool = False,
) -> pd.DataFrame:
    """Analyse ``inputs`` into ``out``; return the summary table (also written to ``out/summary.csv``).

    A bad input — unreadable, refused, or one whose analysis fails (a non-finite probability map included) — is
    an error row and the batch goes on. A failure to *write* (a full disk, a read-only folder) is not the
    input's fault: it stops the batch with an :class:`OSError` (completed inputs are kept and a re-run resumes).
    """
    out = prepare_output_dir(out)
    models = (pipeline.model_info["version"], (pipeline.lung_info or {}).get("version"), list(pipeline.warnings))
    rows = run_batch(
        inputs,
        lambda rad, image_id: write_outputs(pipeline, rad, image_id, out, seg, overlay, cam)[0],
        lambda image_id: complete_outputs(out, image_id, seg, overlay, cam, models),
        summary_row,
        workers,
        progress,
        on_result,
    )
    return write_summary(out, rows)


def write_summary(out: Path, rows: list[dict]) -> pd.DataFrame:
    """``out/summary.csv`` from the rows of a batch (in input order), in triage order: worst severity, then
    highest probability first; failures last. Returns the table."""
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if len(table):
        rank = table["max_severity"].map(lambda v: SEVERITY_RANK.get(v if isinstance(v, str) else None, -1))
        failed = (table["status"] == "error").astype(int)
        order = pd.DataFrame({"failed": failed, "rank": -rank, "prob": -table["probability"].astype(float).fillna(-1)})
        table = table.loc[order.sort_values(["failed", "rank", "prob"], kind="stable").index].reset_index(drop=True)
    write_text_atomic(out / "summary.csv", table.to_csv(index=False))
    return table


def write_outputs(
    pipeline: ClinicalPipeline, rad: Radiograph, image_id: str, out: Path, seg: bool, overlay: bool, cam: bool = False
) -> tuple[dict, Analysis]:
    """Analyse one radiograph and write ``<image_id>_mask.png`` (0/255), ``_overlay.png`` (``overlay``),
    ``_cam.png`` (``cam``), ``_seg.dcm`` (``seg``, DICOM inputs) and last ``<image_id>.json`` under ``out``, each
    atomically; returns the JSON document and the analysis (mask and lung fields in the input's grid)."""
    start = time.perf_counter()
    analysis = pipeline.analyse(rad)
    t0 = time.perf_counter()
    doc = analysis.report
    outputs = {"mask": f"{image_id}_mask.png", "overlay": None, "seg": None, "cam": None}
    if cam:
        t_cam = time.perf_counter()
        heat = cam_for_image(pipeline.ptx, rad.image, analysis.mask)
        outputs["cam"] = f"{image_id}_cam.png"
        write_png(under(out, outputs["cam"]), cam_overlay(rad.image, heat), compression=1)
        doc["timings_s"]["cam_s"] = time.perf_counter() - t_cam
    write_png(under(out, outputs["mask"]), analysis.mask.astype(np.uint8) * np.uint8(255))
    if overlay:
        outputs["overlay"] = f"{image_id}_overlay.png"
        lungs = None if analysis.lungs is None or not analysis.lungs.found else (analysis.lungs.right, analysis.lungs.left)
        write_png(under(out, outputs["overlay"]), clinical_overlay(rad.image, analysis.mask, lungs, analysis.report), compression=1)
    if seg:
        if rad.dataset is None:
            doc["seg_note"] = "no DICOM SEG: the input is not a DICOM file"
        else:
            outputs["seg"] = f"{image_id}_seg.dcm"
            lungs = None if analysis.lungs is None or not analysis.lungs.found else (analysis.lungs.right, analysis.lungs.left)
            write_seg(under(out, outputs["seg"]), rad.dataset, analysis.mask, lungs, pipeline.model_info["version"])
    doc["outputs"] = outputs
    doc["timings_s"]["write_s"] = time.perf_counter() - t0
    doc["timings_s"]["total_s"] = time.perf_counter() - start  # reading the input excluded (done ahead)
    write_text_atomic(under(out, f"{image_id}.json"), dumps(doc, indent=2))  # last: marks the input complete
    return doc, analysis
