"""``ptxseg lungs`` as a library: lung-field maps of radiographs, the patient's sides, and the quality gate.

Per input, under ``out``: ``<id>_lungs.png`` (uint8 at the input's own size: 0 background, 1 the patient's right
lung, 2 the patient's left lung) and last ``<id>.json`` (per-lung area in px and mm², the QC block with the
quality gate); ``summary.csv`` at the end. Resumable and fault-tolerant as ``ptxseg predict``
(:mod:`ptxseg.tasks.batch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptxseg.artifacts.shipped import shipped_lung_model
from ptxseg.clinical.inputs import Radiograph
from ptxseg.clinical.pipeline import input_block, qc_block
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.images import write_png
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import is_safe_name, under
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.measure.quantify import area_mm2
from ptxseg.tasks.batch import BASE_COLUMNS, base_row, run_batch

FORMAT = "ptxseg-lungs/1"
SUMMARY_COLUMNS = [
    *BASE_COLUMNS,
    "right_area_px",
    "left_area_px",
    "right_area_mm2",
    "left_area_mm2",
    "seconds",
]


class LungSegmenter:
    """A lung-field model (run directory, weights file or bundle; default: the one shipped with ptxseg) that
    answers, per radiograph, the patient's right and left lung fields on the radiograph's own pixel grid."""

    def __init__(
        self, model: str | PathLike[str] | None = None, device: str = "cpu", threads: int | None = None, tta: list[str] | None = None
    ) -> None:
        path = Path(model) if model is not None else shipped_lung_model()
        if path is None:
            raise PtxsegError("--model", "no lung-field model given and none ships with this installation")
        self.path = path
        self.model = Predictor([path], tta=tta, device=device, threads=threads)
        if self.model.target != "lungs":
            raise PtxsegError(path, f"is a {self.model.target} model, not a lung-field model")
        self.info = {
            "path": str(path),
            "name": self.model.card.model.name,
            "encoder": self.model.card.model.encoder,
            "version": self.model.version,
            "backend": self.model.backend,
            "shipped": path == shipped_lung_model(),
        }

    def analyse(self, rad: Radiograph) -> tuple[np.ndarray, dict[str, Any]]:
        """The label map (uint8 H×W: 0, 1 right, 2 left) and the JSON document of one radiograph."""
        t0 = time.perf_counter()
        fields = split_lungs(self.model.predict([rad.image])[0].mask(self.model.operating_point))
        labels = np.zeros(rad.image.shape, np.uint8)
        labels[fields.right], labels[fields.left] = 1, 2
        px_mm2 = None if rad.spacing_mm is None else rad.spacing_mm[0] * rad.spacing_mm[1]
        sides = {}
        for side, m in (("right", fields.right), ("left", fields.left)):
            area = int(m.sum())
            sides[side] = {"area_px": area, "area_mm2": area_mm2(area, px_mm2), "found": bool(area)}
        doc = {
            "format": FORMAT,
            "input": input_block(rad),
            "qc": qc_block(rad, fields),
            "lung_model": self.info,
            **sides,
            "notes": fields.notes,
            "timings_s": {"lungs_s": time.perf_counter() - t0},
        }
        return labels, doc


def _complete(out: Path, image_id: str, version: str) -> dict[str, Any] | None:
    path = under(out, f"{image_id}.json")
    if not path.is_file():
        return None
    try:
        doc = read_json_object(path)
    except PtxsegError:
        return None
    name = (doc.get("outputs") or {}).get("lungs")
    if doc.get("format") != FORMAT or (doc.get("lung_model") or {}).get("version") != version:
        return None
    return doc if isinstance(name, str) and is_safe_name(name) and (out / name).is_file() else None


def _row(path: Path, image_id: str, status: str, reason: str, doc: dict | None, seconds: float | None) -> dict:
    row = base_row(SUMMARY_COLUMNS, path, image_id, status, reason, doc, seconds)
    if doc is not None:
        row.update({f"{s}_area_{u}": doc[s][f"area_{u}"] for s in ("right", "left") for u in ("px", "mm2")})
    return row


def segment_lungs_batch(
    segmenter: LungSegmenter,
    inputs: list[Path],
    out: str | PathLike[str],
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Lung-field maps of ``inputs`` into ``out``; return the summary table (also ``out/summary.csv``, in input order)."""
    out = prepare_output_dir(out)

    def process(rad: Radiograph, image_id: str) -> dict:
        labels, doc = segmenter.analyse(rad)
        t0 = time.perf_counter()
        doc["outputs"] = {"lungs": f"{image_id}_lungs.png"}
        write_png(under(out, doc["outputs"]["lungs"]), labels)
        doc["timings_s"]["write_s"] = time.perf_counter() - t0
        write_text_atomic(under(out, f"{image_id}.json"), dumps(doc, indent=2))  # last: marks the input complete
        return doc

    rows = run_batch(
        inputs, process, lambda image_id: _complete(out, image_id, segmenter.info["version"]), _row, workers, progress, on_result
    )
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    write_text_atomic(out / "summary.csv", table.to_csv(index=False))
    return table
