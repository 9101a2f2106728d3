"""The clinical answer for one radiograph: is there a pneumothorax, where, which side, how big, how sure.

Two phases, as in the published method: (I) a lung-field model gives the full
lung fields, split into the patient's right and left lung
(:func:`ptxseg.lungs.split_lungs`); (II) the pneumothorax model's mask (its
tuned operating point applied) is sized per side against them
(:func:`ptxseg.quantify.quantify`). Everything is computed in the input
image's own pixel grid, so a DICOM's PixelSpacing applies unchanged and the
DICOM SEG has the source's full resolution.

Not a medical device: phantom-trained models say nothing about patients.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ptxseg.card import synthetic_warning, training_domains
from ptxseg.data.qc import image_warnings, qc_verdict
from ptxseg.errors import PtxsegError
from ptxseg.infer import Prediction, Predictor
from ptxseg.io.derived import header_problems, invalid_uids
from ptxseg.io.dicom import is_dicom_file
from ptxseg.io.images import raster_size, read_radiograph_dataset
from ptxseg.io.names import safe_name
from ptxseg.lungs import LungFields, split_lungs
from ptxseg.quality import GATE_FLAGS, quality_gate
from ptxseg.quantify import SEVERITY_BOUNDS, SIDES, area_mm2, quantify
from ptxseg.shipped import WEIGHTS_DIR, resolve_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}
SEVERITY_RANK = {None: -1, "none": 0, "mild": 1, "moderate": 2, "severe": 3}
FORMAT = "ptxseg-prediction/1"


@dataclass
class Radiograph:
    """One input: the image (float32 H×W in ``[0, 1]``, brighter = denser), its id and, for DICOM, its dataset."""

    path: Path
    id: str
    image: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    dataset: Any = None  # pydicom.Dataset for DICOM inputs
    identifiers: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # QC warnings of the reader (lateral view, non-chest body part …)
    header_problems: dict[str, str] = field(default_factory=dict)  # copied attributes that break their VR → why
    decoded_scale: float = 1.0  # image side / the file's side: below 1 when a large raster file was decoded reduced


def gather_inputs(paths: list[str | PathLike[str]], exclude: str | PathLike[str] | None = None) -> list[Path]:
    """Expand folders (recursively: DICOM, PNG, JPEG files) and list files (one path per line, ``#`` comments,
    relative to the list's folder); other named files are kept so that their error is reported.

    Files under ``exclude`` (the output folder, which may lie inside an input folder) are left out, so a run
    never ingests its own outputs; a list file that lists itself (or a cycle of list files) is read once.
    """

    skip = Path(os.path.realpath(exclude)) if exclude is not None else None
    seen_lists: set[Path] = set()

    def excluded(p: Path) -> bool:
        return skip is not None and Path(os.path.realpath(p)).is_relative_to(skip)

    def expand(raws: list[str | PathLike[str]]) -> list[Path]:
        out: list[Path] = []
        for raw in raws:
            p = Path(raw)
            if p.is_dir():
                if excluded(p):
                    continue
                for f in sorted(p.rglob("*")):
                    if excluded(f):
                        continue
                    if f.is_file() and (f.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES or (not f.suffix and is_dicom_file(f))):
                        out.append(f)
            elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
                key = Path(os.path.realpath(p))
                if key in seen_lists:
                    continue
                seen_lists.add(key)
                try:
                    lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
                except (OSError, UnicodeDecodeError) as exc:
                    raise PtxsegError(p, f"list file cannot be read ({type(exc).__name__})") from None
                out += expand([p.parent / ln for ln in lines if ln and not ln.startswith("#")])
            else:
                out.append(p)
        return out

    return list(dict.fromkeys(expand(list(paths))))


def input_id(path: str | PathLike[str]) -> str:
    """The safe file name an input's outputs are named by, cheaply (a DICOM's header only): its SOPInstanceUID,
    else the file stem — through :func:`ptxseg.io.names.safe_name`, so an identifier read from a file never
    becomes a path (an unsafe UID is mapped to a readable prefix plus its hash)."""

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES and path.is_file():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uid = str(ds.get("SOPInstanceUID", "") or "").strip()
            if uid:
                return safe_name(uid)
        except Exception:  # noqa: BLE001 - any unreadable file is named by its stem; loading it reports why
            pass
    return safe_name(path.stem)


def unique_ids(paths: list[Path]) -> list[str]:
    """:func:`input_id` of each path, a repeated id suffixed ``_2``, ``_3`` … in input order."""
    used: set[str] = set()
    out = []
    for p in paths:
        base = image_id = input_id(p)
        k = 2
        while image_id in used:  # e.g. the same file name in two folders
            image_id, k = f"{base}_{k}", k + 1
        used.add(image_id)
        out.append(image_id)
    return out


def load_radiograph(path: str | PathLike[str], reduce_to: int | None = None) -> Radiograph:
    """Read a DICOM, PNG or JPEG radiograph (header and pixels, in one guarded step). ``reduce_to``: a raster file
    whose longest side is at least twice this is decoded at 1/2, 1/4 or 1/8 (:func:`ptxseg.io.images.read_image`),
    and everything derived from it lies on that grid (``decoded_scale``); a DICOM is always read in full.

    Raises:
        PtxsegError: naming the file and the reason — for any failure of reading it, never another exception.
    """

    path = Path(path)
    image, meta, ds = read_radiograph_dataset(path, reduce_to=reduce_to)
    if ds is None:
        scale = image.shape[1] / raster_size(path)[1] if reduce_to else 1.0
        return Radiograph(path, safe_name(path.stem), image, warnings=list(meta.warnings), decoded_scale=scale)
    ids = {k: getattr(meta, k) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "ViewPosition")}
    problems = header_problems(ds)  # left out of the SEG/SC/SR, so that a bad birth date never costs the result
    warnings = list(meta.warnings) + (["header_values_dropped"] if problems else []) + (["uid_invalid"] if invalid_uids(ds) else [])
    return Radiograph(path, safe_name(meta.SOPInstanceUID or path.stem), image, meta.PixelSpacing, ds, ids, warnings, problems)


#: the lung-field model shipped inside the package (a bundle; ``docs/lungs.md``), absent in a checkout without it
SHIPPED_LUNG_MODEL = WEIGHTS_DIR / "lungs"
_MODEL_MARKERS = ("best.safetensors", "model.safetensors", "bundle.json")  # a run directory, a weights folder or a bundle


def shipped_lung_model() -> Path | None:
    """The lung-field model that ships with ptxseg, or None when this installation has none."""
    return SHIPPED_LUNG_MODEL if (SHIPPED_LUNG_MODEL / "bundle.json").is_file() else None


def find_lung_model(model: str | PathLike[str]) -> Path | None:
    """The lung-field model used with a pneumothorax model when the user names none: the one a bundle carries
    (put there by ``ptxseg export --lungs``, i.e. chosen by whoever exported it), else the real one that ships
    with ptxseg; None when there is neither. A run directory's ``lungs/`` is never picked up unasked
    (``ptxseg demo`` keeps a phantom-trained one there in older versions): name it with ``--lungs``."""
    p = Path(model)
    folder = p if p.is_dir() else p.parent
    candidate = folder / "lungs"
    if (folder / "bundle.json").is_file() and any((candidate / m).is_file() for m in _MODEL_MARKERS):
        return candidate
    return shipped_lung_model()


def unused_lung_model(model: str | PathLike[str]) -> Path | None:
    """A lung-field model stored beside a run directory (``MODEL/lungs``) that :func:`find_lung_model` passes over."""
    p = Path(model)
    candidate = p / "lungs"
    if p.is_dir() and not (p / "bundle.json").is_file() and any((candidate / m).is_file() for m in _MODEL_MARKERS):
        return candidate
    return None


def _first_warning(cards: list) -> str | None:
    """:func:`ptxseg.card.synthetic_warning` of the first ensemble member trained on synthetic data."""
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
