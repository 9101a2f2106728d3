"""``ptxseg synth``: write a phantom dataset in one of three layouts.

``canonical``
    the dataset folder of ``ptxseg convert`` (``images/``, ``masks/``,
    ``manifest.csv``) plus ``lungs/<id>.png`` (0 background, 1 the patient's
    right lung, 2 the left; full pre-collapse fields) and ground-truth columns
    in the manifest: ``ptx_side``, ``ratio_right``, ``ratio_left`` (% of that
    lung), ``lung_area_right``, ``lung_area_left``, ``mask_source``.
``png``
    the published PNG layout (``train/png_images/train_image_<i>_<y>.png`` and
    ``train/png_masks/train_mask_<i>_<y>.png``, 8-bit).
``kaggle``
    SIIM-shaped DICOM files (CR, MONOCHROME2, 8-bit, PixelSpacing, SIIM-like
    UIDs, patient IDs) under ``dicom-images-train/<study>/<series>/`` and a
    ``train-rle.csv`` in the stage-1 relative format, one row per lesion as in
    the challenge file (RLE on the ``size × size`` grid: convert with
    ``--rle-size SIZE``), plus ``lung-masks/<SOPInstanceUID>.png`` (as ``lungs/``
    above; not part of the SIIM layout).

Every phantom is a pure function of ``(seed, index)``: the same arguments give
byte-identical files whatever ``workers`` is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from pydicom.uid import generate_uid

from ptxseg.data.geometry import Geometry, resize_mask
from ptxseg.data.manifest import StoredGeometry, write_dataset_info, write_manifest
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.dicom import write_dicom
from ptxseg.io.images import to_uint16, write_png
from ptxseg.io.rle import read_rle_csv, rle_encode, write_rle_rows
from ptxseg.parallel import process_map
from ptxseg.synth.phantom import Phantom, make_phantom

SIIM_UID_ROOT = "1.2.276.0.7230010.3.1.4."
FIELD_OF_VIEW_MM = 430.0  # a 43 cm detector: pixel spacing = 430 / size mm
_POSITIVE, _PAIR, _REAL, _DEMOGRAPHICS, _TEST = 13, 14, 15, 16, 17


def _uid(seed: int, index: int, kind: str) -> str:
    return generate_uid(prefix=SIIM_UID_ROOT, entropy_srcs=["ptxseg-synth", str(seed), str(index), kind])


def patient_of(seed: int, index: int) -> int:
    """Patient number of phantom ``index``: about 30 % of consecutive pairs are one patient's two films."""
    pair = index // 2
    shared = np.random.default_rng([seed, _PAIR, pair]).random() < 0.3
    return 2 * pair if shared else index


@functools.lru_cache(maxsize=2)
def _real_masks(path: str):
    masks = read_rle_csv(path)
    positives = masks.positive_ids
    if not positives:
        raise PtxsegError(path, "--masks-from: the RLE CSV has no positive image")
    return masks, positives


def _real_mask(path: str, seed: int, index: int, size: int) -> tuple[np.ndarray, str]:
    masks, positives = _real_masks(path)
    image_id = positives[int(np.random.default_rng([seed, _REAL, index]).integers(len(positives)))]
    full = masks[image_id]
    return resize_mask(full, Geometry.fit(full.shape[0], full.shape[1], size, "pad"), size), image_id


def _lesions(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components of a mask (8-connectivity), largest first."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    order = 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA])
    return [(labels == k).astype(np.uint8) for k in order]


def stored_as_drawn(size: int) -> dict:
    """The manifest's QC and geometry fields of an image generated at its stored ``size²`` (no resize, no pad)."""
    return {
        "qc": "ok",
        "qc_reason": "",
        "has_image": 1,
        "orig_rows": size,
        "orig_cols": size,
        "scale_row": 1.0,
        "scale_col": 1.0,
        "pad_top": 0,
        "pad_left": 0,
    }


def is_positive(seed: int, index: int, positive_fraction: float) -> bool:
    """Whether phantom ``index`` has a pneumothorax: an independent coin per index."""
    return bool(np.random.default_rng([seed, _POSITIVE, index]).random() < positive_fraction)


def is_test_patient(seed: int, patient: int, test_fraction: float) -> bool:
    """Whether a patient's images form part of the held-out test split (a coin per patient, so no patient spans splits)."""
    return test_fraction > 0 and bool(np.random.default_rng([seed, _TEST, patient]).random() < test_fraction)


def synth_one(
    out: Path,
    seed: int,
    index: int,
    size: int,
    positive_fraction: float,
    masks_from: str | None,
    layout: str,
    test_fraction: float = 0.0,
) -> dict:
    """Generate and write phantom ``index``; return its manifest row."""
    positive = is_positive(seed, index, positive_fraction)
    real, real_id = (None, None)
    if positive and masks_from:
        real, real_id = _real_mask(masks_from, seed, index, size)
    patient = patient_of(seed, index)
    ph: Phantom = make_phantom(seed, index, size, positive=positive, patient=patient, real_mask=real)
    demo = np.random.default_rng([seed, _DEMOGRAPHICS, patient])
    sop = _uid(seed, index, "sop")
    spacing = FIELD_OF_VIEW_MM / size
    row = {
        "id": sop,
        "source": "synth",
        "domain": "phantom",
        "split": "test" if is_test_patient(seed, patient, test_fraction) else "train",
        "positive": int(ph.positive),
        "mask_area": int(ph.ptx.sum()),
        **stored_as_drawn(size),
        "SOPInstanceUID": sop,
        "StudyInstanceUID": _uid(seed, index, "study"),
        "SeriesInstanceUID": _uid(seed, index, "series"),
        "PatientID": f"SYN{seed:04d}-{patient:06d}",
        "Modality": "CR",
        "BodyPartExamined": "CHEST",
        "ViewPosition": ph.info["view"],
        "PatientSex": "MF"[int(demo.integers(2))],
        "PatientAge": f"{int(demo.integers(18, 90)):03d}Y",
        "PixelSpacingRow": spacing,
        "PixelSpacingCol": spacing,
        "ptx_side": ph.side,
        "ratio_right": round(ph.ratio["right"], 4),
        "ratio_left": round(ph.ratio["left"], 4),
        "lung_area_right": int(ph.lung_right.sum()),
        "lung_area_left": int(ph.lung_left.sum()),
        "mask_source": ph.info.get("mask_source", ""),
        "siim_shape_of": real_id or "",
        "index": index,
    }
    _WRITERS[layout](out, ph, row)
    return row


def _write_canonical(out: Path, ph: Phantom, row: dict) -> None:
    sop = row["id"]
    write_png(out / "images" / f"{sop}.png", to_uint16(ph.image))
    write_png(out / "masks" / f"{sop}.png", ph.ptx * np.uint8(255))
    write_png(out / "lungs" / f"{sop}.png", ph.lung_right + 2 * ph.lung_left)


def _write_png_layout(out: Path, ph: Phantom, row: dict) -> None:
    index, y, split = row["index"], int(ph.positive), row["split"]
    write_png(out / split / "png_images" / f"{split}_image_{index}_{y}.png", np.round(ph.image * 255).astype(np.uint8))
    write_png(out / split / "png_masks" / f"{split}_mask_{index}_{y}.png", ph.ptx * np.uint8(255))


def _write_kaggle(out: Path, ph: Phantom, row: dict) -> None:
    write_dicom(
        out / f"dicom-images-{row['split']}" / row["StudyInstanceUID"] / row["SeriesInstanceUID"] / f"{row['id']}.dcm",
        np.round(ph.image * 255).astype(np.uint8),
        sop_instance_uid=row["id"],
        study_instance_uid=row["StudyInstanceUID"],
        series_instance_uid=row["SeriesInstanceUID"],
        patient_id=row["PatientID"],
        view_position=row["ViewPosition"],
        pixel_spacing=(row["PixelSpacingRow"], row["PixelSpacingCol"]),
        patient_sex=row["PatientSex"],
        patient_age=row["PatientAge"],
    )
    # the phantom's lung fields (not part of the SIIM layout): ptxseg demo trains its lung-field model on them
    write_png(out / "lung-masks" / f"{row['id']}.png", ph.lung_right + 2 * ph.lung_left)
    # one RLE row per lesion, as in the challenge file; encoded here so workers return strings, not masks
    row["_rle"] = [rle_encode(m, "relative") for m in _lesions(ph.ptx)] or ["-1"]


#: layout name → writer of one phantom's files
_WRITERS = {"canonical": _write_canonical, "png": _write_png_layout, "kaggle": _write_kaggle}
LAYOUTS = tuple(_WRITERS)


def _one_star(args: tuple) -> dict:
    return synth_one(*args)


def validate(n: int, size: int, positive_fraction: float, layout: str) -> None:
    """Check ``ptxseg synth`` options; raise a :class:`PtxsegError` naming the bad one."""
    if n < 1:
        raise PtxsegError("-n", f"must be at least 1, got {n}")
    if not 64 <= size <= 4096:
        raise PtxsegError("--size", f"must be between 64 and 4096 pixels, got {size}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise PtxsegError("--positive-fraction", f"must be between 0 and 1, got {positive_fraction}")
    if layout not in LAYOUTS:
        raise PtxsegError("--layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def synth_dataset(
    out: str | PathLike[str],
    n: int,
    *,
    size: int = 512,
    positive_fraction: float = 0.22,
    seed: int = 0,
    masks_from: str | PathLike[str] | None = None,
    layout: str = "canonical",
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    test_fraction: float = 0.0,
) -> list[dict]:
    """Write ``n`` phantoms to ``out`` in ``layout``; return their manifest rows (in index order).

    ``test_fraction`` of the patients (by a coin per patient) form a ``test``
    split: ``split=test`` in the canonical manifest, ``test/`` folders in the png
    layout, ``dicom-images-test/`` in the Kaggle layout (their RLE rows stay in
    ``train-rle.csv``, so ``ptxseg convert`` keeps their masks for evaluation).
    """
    validate(n, size, positive_fraction, layout)
    out = Path(out)
    masks_path = None
    if masks_from is not None:
        masks_path = str(Path(masks_from).resolve())
        _real_masks(masks_path)  # fail early, in this process, on a bad CSV
    if not 0.0 <= test_fraction < 1.0:
        raise PtxsegError("--test-fraction", f"must be in [0, 1), got {test_fraction}")
    prepare_output_dir(out)
    jobs = [(out, seed, i, size, positive_fraction, masks_path, layout, test_fraction) for i in range(n)]
    rows = process_map(_one_star, jobs, workers, progress)
    if layout == "canonical":
        write_dataset_info(out, StoredGeometry(size, "pad", True))  # phantoms are square: stored as drawn
        write_manifest(out / "manifest.csv", rows)
        return rows
    if layout == "kaggle":
        write_rle_rows(out / "train-rle.csv", [(r["id"], rle) for r in rows for rle in r.pop("_rle")])
    # the ground truth (side, ratios, lung areas) of the png and kaggle layouts, by phantom index
    write_manifest(out / "phantoms.csv", rows)
    # what convert reads: these are phantoms (model cards trained on them say so)
    ids = [str(r["index"]) if layout == "png" else r["id"] for r in rows]
    write_text_atomic(out / "manifest.csv", "id,domain\n" + "".join(f"{i},phantom\n" for i in ids))
    return rows
