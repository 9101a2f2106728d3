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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ptxseg.clinical import SEVERITY_RANK, Analysis, ClinicalPipeline, Radiograph, load_radiograph, unique_ids
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.images import write_png
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import is_safe_name, under

SUMMARY_COLUMNS = [
    "input",
    "id",
    "status",
    "reason",
    "present",
    "probability",
    "max_severity",
    "ratio_right_pct",
    "severity_right",
    "ratio_left_pct",
    "severity_left",
    "area_px",
    "probability_std",
    "seconds",
]
_YELLOW, _CYAN, _WHITE = (255, 215, 0), (0, 200, 255), (255, 255, 255)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=_WHITE, outline: bool = False) -> None:
    thick = max(1, int(round(scale * 1.6)))
    if outline:  # single letters only: Hershey glyph advances grow with thickness, so outlined words drift apart
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _display_size(shape: tuple[int, int], min_side: int = 640, max_side: int = 1024) -> tuple[int, int]:
    """(width, height) of an overlay: the longer side scaled into [min_side, max_side] so text stays readable."""
    h, w = shape
    f = min(max(1.0, min_side / max(h, w)), max_side / max(h, w))
    return max(1, int(round(w * f))), max(1, int(round(h * f)))


def _display_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    shrink = size[0] < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize((np.clip(image, 0, 1) * 255).astype(np.uint8), size, interpolation=interp)


def clinical_overlay(image: np.ndarray, analysis: Analysis) -> np.ndarray:
    """RGB uint8 overlay: pneumothorax filled yellow (α 0.4) and outlined, lung fields outlined cyan, the patient's
    R/L marked on their sides of the image, and the findings printed at the top; 640–1024 px on its longer side."""
    size = _display_size(image.shape)
    gray = _display_gray(image, size)
    rgb = np.repeat(gray[..., None], 3, -1).astype(np.float32)

    def small(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    ptx = small(analysis.mask)
    rgb[ptx] = 0.6 * rgb[ptx] + 0.4 * np.array(_YELLOW, np.float32)
    out = rgb.astype(np.uint8)
    line = max(1, int(round(max(size) / 400)))
    if analysis.lungs is not None:
        for lung in (analysis.lungs.right, analysis.lungs.left):
            contours, _ = cv2.findContours(small(lung).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, _CYAN, line)
    contours, _ = cv2.findContours(ptx.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, _YELLOW, line + 1)
    r = analysis.report
    scale = max(0.6, max(size) / 1000)
    step = int(40 * scale)
    _text(out, "R", (int(0.03 * size[0]), size[1] - int(0.04 * size[1])), scale * 1.6, outline=True)  # patient's right: image left
    _text(out, "L", (size[0] - int(0.03 * size[0]) - int(24 * scale), size[1] - int(0.04 * size[1])), scale * 1.6, outline=True)
    p = r["pneumothorax"]
    lines = [(f"Pneumothorax: {'YES' if p['present'] else 'no'}  (p = {p['probability']:.2f})", _YELLOW if p["present"] else _WHITE)]
    for side in ("right", "left"):
        s = r[side]
        if s["ratio_pct"] is None:
            lines.append((f"{side.capitalize()} lung: n/a", _WHITE))
        else:
            lines.append((f"{side.capitalize()} lung: {s['ratio_pct']:.1f}% of field, {s['severity']}", _WHITE))
    if not r["lungs"]["found"]:
        lines.append(("(no lung fields: sides not sized)", _WHITE))
    x0, y0 = int(0.02 * size[0]), int(0.015 * size[1])
    thick = max(1, int(round(scale * 1.6)))
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for t, _ in lines)
    box = out[y0 : y0 + step * len(lines) + step // 3, x0 : x0 + width + int(20 * scale)]
    box[:] = (box * 0.35).astype(np.uint8)  # a dark panel behind the findings
    for k, (text, color) in enumerate(lines):
        _text(out, text, (x0 + int(8 * scale), y0 + step * (k + 1) - step // 5), scale, color)
    return out


def _complete(
    out: Path, image_id: str, seg: bool, overlay: bool = True, cam: bool = False, models: tuple = ()
) -> dict[str, Any] | None:
    """The stored JSON of ``image_id`` if it and every output it lists exist, it has the outputs asked for now,
    and it was made by the same models (``models``: the pneumothorax and lung model versions, when given)."""
    path = under(out, f"{image_id}.json")
    if not path.is_file():
        return None
    try:
        doc = read_json_object(path)
    except PtxsegError:  # unreadable, tampered or half-made by another tool: redo the input
        return None
    if models and (doc.get("model", {}).get("version"), (doc.get("lung_model") or {}).get("version")) != models:
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


def _row(path: Path, image_id: str, status: str, reason: str = "", doc: dict | None = None, seconds: float | None = None) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(input=str(path), id=image_id, status=status, reason=reason, seconds=seconds)
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
        )
    return row


def _prefetch(paths: list[Path], workers: int) -> Iterator[tuple[Path, Radiograph | PtxsegError]]:
    """Radiographs in input order, read ahead by ``workers`` threads (at most 2 × workers in memory)."""

    def load(p: Path):
        try:
            return load_radiograph(p)
        except PtxsegError as exc:
            return exc

    if workers <= 1:
        for p in paths:
            yield p, load(p)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        it = iter(paths)
        for p in it:
            pending.append((p, pool.submit(load, p)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            p, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield p, fut.result()


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
    rows, todo = [], []
    models = (pipeline.model_info["version"], (pipeline.lung_info or {}).get("version"))
    # resume first, from ids and stored JSONs alone: complete inputs are not decoded again
    for path, image_id in zip(inputs, unique_ids(inputs), strict=True):
        done = _complete(out, image_id, seg, overlay, cam, models)
        if done is None:
            todo.append((path, image_id))
        else:
            rows.append(_row(path, image_id, "skipped", "complete outputs from an earlier run", done))
    stream = _prefetch([p for p, _ in todo], workers)
    for (path, loaded), (_, image_id) in zip(progress(stream, len(todo)) if progress else stream, todo, strict=True):
        t0 = time.perf_counter()
        if isinstance(loaded, PtxsegError):
            rows.append(_row(path, image_id, "error", loaded.reason))
            continue
        try:
            doc = _write_outputs(pipeline, loaded, image_id, out, seg, overlay, cam)
        except PtxsegError as exc:
            rows.append(_row(path, image_id, "error", exc.reason))
            continue
        except OSError:
            raise  # the output folder's problem (ENOSPC, EROFS …), not the input's
        except Exception as exc:  # noqa: BLE001 - one input's unexpected failure never stops the batch
            rows.append(_row(path, image_id, "error", f"analysis failed ({type(exc).__name__}: {str(exc)[:200]})"))
            continue
        rows.append(_row(path, image_id, "ok", "", doc, time.perf_counter() - t0))
        if on_result is not None:
            on_result(doc)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if len(table):
        rank = table["max_severity"].map(lambda v: SEVERITY_RANK.get(v if isinstance(v, str) else None, -1))
        failed = (table["status"] == "error").astype(int)
        order = pd.DataFrame({"failed": failed, "rank": -rank, "prob": -table["probability"].astype(float).fillna(-1)})
        table = table.loc[order.sort_values(["failed", "rank", "prob"], kind="stable").index].reset_index(drop=True)
    write_text_atomic(out / "summary.csv", table.to_csv(index=False))
    return table


def cam_overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """RGB uint8: a Grad-CAM heat map (JET colours, α 0.45) over the radiograph, 640–1024 px on its longer side."""
    size = _display_size(image.shape)
    gray = _display_gray(image, size)
    heat = cv2.applyColorMap(cv2.resize((np.clip(cam, 0, 1) * 255).astype(np.uint8), size), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    return (0.55 * np.repeat(gray[..., None], 3, -1) + 0.45 * heat).astype(np.uint8)


def _write_outputs(
    pipeline: ClinicalPipeline, rad: Radiograph, image_id: str, out: Path, seg: bool, overlay: bool, cam: bool = False
) -> dict:
    start = time.perf_counter()
    analysis = pipeline.analyse(rad)
    t0 = time.perf_counter()
    doc = analysis.report
    outputs = {"mask": f"{image_id}_mask.png", "overlay": None, "seg": None, "cam": None}
    if cam:
        from ptxseg.explain import cam_for_image

        t_cam = time.perf_counter()
        heat = cam_for_image(pipeline.ptx, rad.image, analysis.mask)
        outputs["cam"] = f"{image_id}_cam.png"
        write_png(under(out, outputs["cam"]), cam_overlay(rad.image, heat))
        doc["timings_s"]["cam_s"] = time.perf_counter() - t_cam
    write_png(under(out, outputs["mask"]), analysis.mask.astype(np.uint8) * np.uint8(255))
    if overlay:
        outputs["overlay"] = f"{image_id}_overlay.png"
        write_png(under(out, outputs["overlay"]), clinical_overlay(rad.image, analysis))
    if seg:
        if rad.dataset is None:
            doc["seg_note"] = "no DICOM SEG: the input is not a DICOM file"
        else:
            from ptxseg.io.seg import write_seg

            outputs["seg"] = f"{image_id}_seg.dcm"
            lungs = None if analysis.lungs is None or not analysis.lungs.found else (analysis.lungs.right, analysis.lungs.left)
            write_seg(under(out, outputs["seg"]), rad.dataset, analysis.mask, lungs, pipeline.model_info["version"])
    doc["outputs"] = outputs
    doc["timings_s"]["write_s"] = time.perf_counter() - t0
    doc["timings_s"]["total_s"] = time.perf_counter() - start  # reading the input excluded (done ahead)
    write_text_atomic(under(out, f"{image_id}.json"), dumps(doc, indent=2))  # last: marks the input complete
    return doc
