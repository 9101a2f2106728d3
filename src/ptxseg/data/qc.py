"""Quality-control tags of dataset items.

Every item of a converted dataset carries zero or more tags in the manifest's
``qc`` column. Refusal tags come from the DICOM/image reader (the item has no
image); the others mark an image that was written but deserves a look.
``ptxseg convert --drop-qc`` leaves every tagged item out of the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptxseg.errors import PtxsegError
from ptxseg.io.dicom import is_dicom_file
from ptxseg.io.images import RASTER_SUFFIXES, read_radiograph

#: Tag → what it means. Refusals first.
QC_TAGS: dict[str, str] = {
    # refused by the reader: no image written
    "not_dicom": "file is neither DICOM nor an image",
    "not_image": "file is neither DICOM nor an image",
    "corrupt": "unreadable, truncated or undecodable file",
    "no_pixel_data": "DICOM without pixel data",
    "multi_frame": "multi-frame DICOM",
    "colour": "colour (RGB/YBR/palette) image",
    "modality": "not projection radiography (e.g. CT, MR, US)",
    "missing": "file not found",
    "too_small": "too small to be a radiograph",
    "too_large": "more pixels than the limit (PTXSEG_MAX_PIXELS)",
    "unsafe_id": "the id is not a safe file name (path characters, too long): refused",
    # accepted with a warning
    "secondary_capture": "Modality OT/SC (secondary capture)",
    "no_modality": "DICOM without Modality",
    "non_chest_body_part": "BodyPartExamined is not chest",
    "lateral_view": "lateral ViewPosition",
    "voi_ignored": "the file's VOI LUT / window is broken and was ignored",
    "small_image": "smaller than 256 px on a side",
    "header_values_dropped": "header values that break their DICOM type (qc.header_values_dropped) are left out of "
    "the derived DICOM objects; the analysis does not read them",
    "uid_invalid": "the SOP, Study or Series Instance UID is not a valid DICOM UID (e.g. SIIM stage 2's ID_…): outputs are "
    "named by it safely, but a DICOM SEG/SC/SR referencing it will not validate",
    # annotation consistency
    "mask_without_image": "annotation for an image that does not exist",
    "image_without_mask": "training image without annotation",
    "mask_shape_mismatch": "mask size differs from the image size",
    "label_mask_disagree": "file-name label disagrees with the mask",
    "duplicate_id": "a second source file with the same id",
}

#: Tags meaning the item has no usable image.
REFUSAL_TAGS = frozenset(
    {
        "not_dicom",
        "not_image",
        "corrupt",
        "no_pixel_data",
        "multi_frame",
        "colour",
        "modality",
        "missing",
        "too_small",
        "too_large",
        "unsafe_id",
    }
)

MIN_SIDE_PX = 256


def image_warnings(reader_warnings: list[str], shape: tuple[int, ...]) -> list[str]:
    """The QC warnings of an accepted radiograph: the reader's (lateral view, non-chest body part, secondary capture,
    no modality, ignored VOI) plus ``small_image`` under :data:`MIN_SIDE_PX` on a side; no repeats, order kept."""
    tags = list(reader_warnings) + (["small_image"] if min(shape[:2]) < MIN_SIDE_PX else [])
    return list(dict.fromkeys(tags))


def qc_verdict(warnings: list[str]) -> dict:
    """The ``qc`` block of a prediction: ``verdict`` (``ok``/``warning``), the tags and what each means."""
    return {
        "verdict": "warning" if warnings else "ok",
        "warnings": list(warnings),
        "meaning": {t: QC_TAGS.get(t, t) for t in warnings},
    }


def join_tags(tags: list[str]) -> str:
    """The manifest's ``qc`` value: ``ok`` or the tags joined by ``;`` (order kept, no repeats)."""
    seen = list(dict.fromkeys(tags))
    return ";".join(seen) if seen else "ok"


def split_tags(qc: str) -> list[str]:
    """Inverse of :func:`join_tags`."""
    return [] if qc in ("", "ok") else qc.split(";")


def inspect_file(path: Path, apply_voi: bool = True) -> dict:
    """Read one file; return its metadata, decoded size, intensity range and QC verdict (``ptxseg info``).

    ``verdict`` is ``ok``, ``warning`` (accepted, see ``warnings``) or ``refused`` (see ``reason``), by the same
    rule the conversion applies (:func:`image_warnings`). Never raises for bad input.
    """
    try:
        image, meta = read_radiograph(path, apply_voi=apply_voi)
    except PtxsegError as exc:
        return {"file": str(path), "verdict": "refused", "code": exc.code, "reason": exc.reason}
    warnings = image_warnings(meta.warnings, image.shape)
    metadata = meta.to_dict()
    # a PNG or JPEG has no DICOM header: say what it is, not its file name as a UID
    if Path(path).suffix.lower() in RASTER_SUFFIXES and not is_dicom_file(path):
        metadata = {
            "format": Path(path).suffix.lstrip(".").upper() or "image",
            "Rows": metadata["Rows"],
            "Columns": metadata["Columns"],
        }
    return {
        "file": str(path),
        "verdict": "warning" if warnings else "ok",
        "warnings": warnings,
        "decoded_shape": list(image.shape),
        "intensity": {
            "min": round(float(image.min()), 4),
            "max": round(float(image.max()), 4),
            "mean": round(float(image.mean()), 4),
            "p01": round(float(np.percentile(image, 1)), 4),
            "p99": round(float(np.percentile(image, 99)), 4),
        },
        "metadata": metadata,
    }
