"""Read chest radiographs from DICOM as a radiologist sees them.

:func:`read_dicom` returns a float32 image in ``[0, 1]`` where higher is
brighter on the display: the Modality LUT (or RescaleSlope/Intercept) is
applied, the value range comes from BitsStored (not BitsAllocated), the VOI
LUT or window centre/width is applied when present (``apply_voi=False``
skips it), and MONOCHROME1 is inverted. Compressed transfer syntaxes (JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE Lossless) are decoded by
pydicom's pylibjpeg plugins.

Files that cannot be a chest radiograph are refused with a
:class:`~ptxseg.errors.PtxsegError` whose ``code`` says why; files that
probably are one but look unusual are read with warnings in
:attr:`DicomMetadata.warnings`.
"""

from __future__ import annotations

import functools
import warnings as _warnings
import zlib
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import atomic_path
from ptxseg.io.display import apply_voi_transform, check_modality_lut, int_attr, output_range
from ptxseg.limits import check_image_size

#: Projection radiography: accepted silently. "DR" is not a DICOM Modality
#: code but some digital radiography systems write it.
XRAY_MODALITIES = frozenset({"CR", "DX", "DR"})
#: Secondary capture / other: often an exported radiograph; accepted with a warning.
SECONDARY_MODALITIES = frozenset({"OT", "SC"})
#: ViewPosition codes of a lateral projection.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})
_CHEST_WORDS = ("CHEST", "THORA", "LUNG", "PULM", "TORSO", "RIB")


@dataclass
class DicomMetadata:
    """Identifiers and acquisition facts of one radiograph.

    ``PixelSpacing`` is ``(row, column)`` spacing in mm from PixelSpacing, or
    else ImagerPixelSpacing, or ``None`` when the file states neither.
    ``warnings`` lists the QC tags of accepted-but-unusual files
    (``secondary_capture``, ``non_chest_body_part``, ``lateral_view``, ``no_modality``,
    ``voi_ignored``).
    """

    SOPInstanceUID: str | None = None
    StudyInstanceUID: str | None = None
    SeriesInstanceUID: str | None = None
    PatientID: str | None = None
    Modality: str | None = None
    BodyPartExamined: str | None = None
    ViewPosition: str | None = None
    PatientSex: str | None = None
    PatientAge: str | None = None
    Rows: int | None = None
    Columns: int | None = None
    PixelSpacing: tuple[float, float] | None = None
    PhotometricInterpretation: str | None = None
    BitsStored: int | None = None
    TransferSyntaxUID: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready; PixelSpacing as a list)."""
        d = asdict(self)
        if d["PixelSpacing"] is not None:
            d["PixelSpacing"] = list(d["PixelSpacing"])
        return d


def _str(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if 0 < row < 1e3 and 0 < col < 1e3:  # finite, positive, plausible (mm per pixel)
                return (row, col)
    return None


def is_dicom_file(path: str | PathLike[str]) -> bool:
    """Whether the file carries the DICOM Part 10 preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _refuse(path: Path, reason: str, code: str) -> PtxsegError:
    return PtxsegError(path, reason, code=code)


def _quiet(fn):
    """Silence pydicom's warnings inside ``fn``: real files break VR rules
    (re-anonymised UIDs such as ``ID_0011fe81e``, lower-case code strings)
    without harm, and ptxseg reports what matters through its own QC."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            return fn(*args, **kwargs)

    return wrapper


@_quiet
def read_metadata(path: str | PathLike[str]) -> tuple[pydicom.Dataset, DicomMetadata]:
    """Read the header of a DICOM file and check it can hold a chest radiograph.

    Returns the dataset (pixel data not yet decoded) and its metadata with
    warnings. Raises :class:`PtxsegError` with code ``not_dicom``,
    ``corrupt``, ``no_pixel_data``, ``multi_frame``, ``colour``, ``modality``,
    ``too_small`` or ``too_large`` (Rows × Columns checked against
    :mod:`ptxseg.limits` before any pixel is decoded). Never raises anything else.
    """
    path = Path(path)
    with reading(path, "DICOM header"):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            raise _refuse(path, "not a DICOM file (no DICM preamble)", "not_dicom") from None
        except Exception as exc:  # noqa: BLE001 - pydicom, zlib (deflate) and struct raise many types
            raise _refuse(path, f"unreadable or truncated DICOM ({type(exc).__name__}: {str(exc)[:200]})", "corrupt") from None
        ds.filename = str(path)
        if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            _check_deflate_stream(path, ds)
        return ds, _metadata(path, ds)


def _check_deflate_stream(path: Path, ds: pydicom.Dataset) -> None:
    """Refuse a deflated file whose compressed stream ends early or carries bytes after its end.

    zlib stops at the first block marked final and ignores what follows, so a
    damaged stream can decode to a shorter, well-formed dataset (typically one
    that lost its pixel data); pydicom then reports nothing wrong.
    """
    group_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        return  # without it the start of the stream is unknown; pydicom's own checks stand
    # preamble (128) + "DICM" (4) + the group length element itself (12, explicit VR UL)
    start = 128 + 4 + 12 + int(group_length)
    stream = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        stream.decompress(path.read_bytes()[start:])
    except zlib.error as exc:
        raise _refuse(path, f"unreadable or truncated DICOM (deflated stream: {exc})", "corrupt") from None
    # PS3.5 A.5: a deflated stream of odd length is padded with one NUL byte to an even length
    if not stream.eof or stream.unused_data not in (b"", b"\x00"):
        raise _refuse(path, "unreadable or truncated DICOM (deflated stream damaged: it ends before the file does)", "corrupt")


def _metadata(path: Path, ds: pydicom.Dataset) -> DicomMetadata:
    meta = DicomMetadata(
        SOPInstanceUID=_str(ds, "SOPInstanceUID"),
        StudyInstanceUID=_str(ds, "StudyInstanceUID"),
        SeriesInstanceUID=_str(ds, "SeriesInstanceUID"),
        PatientID=_str(ds, "PatientID"),
        Modality=(_str(ds, "Modality") or "").upper() or None,
        BodyPartExamined=_str(ds, "BodyPartExamined"),
        ViewPosition=(_str(ds, "ViewPosition") or "").upper() or None,
        PatientSex=_str(ds, "PatientSex"),
        PatientAge=_str(ds, "PatientAge"),
        Rows=int_attr(ds, "Rows"),
        Columns=int_attr(ds, "Columns"),
        PixelSpacing=_spacing(ds),
        PhotometricInterpretation=_str(ds, "PhotometricInterpretation"),
        BitsStored=int_attr(ds, "BitsStored"),
        TransferSyntaxUID=str(ds.file_meta.get("TransferSyntaxUID", "")) or None,
    )
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise _refuse(path, "no pixel data (not an image object)", "no_pixel_data")
    frames = int_attr(ds, "NumberOfFrames", 1) or 1
    if frames > 1:
        raise _refuse(path, f"multi-frame image ({frames} frames); expected one radiograph", "multi_frame")
    photometric = (meta.PhotometricInterpretation or "").upper()
    samples = int_attr(ds, "SamplesPerPixel", 1) or 1
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _refuse(path, f"colour image ({photometric or 'unknown'}, {samples} samples/pixel); expected grayscale", "colour")
    modality = meta.Modality
    if modality is None:
        meta.warnings.append("no_modality")
    elif modality in SECONDARY_MODALITIES:
        meta.warnings.append("secondary_capture")
    elif modality not in XRAY_MODALITIES:
        raise _refuse(path, f"modality {modality} is not projection radiography (CR, DX, DR)", "modality")
    if meta.Rows is None or meta.Columns is None:
        raise _refuse(path, "no Rows/Columns: the image size is unknown", "corrupt")
    check_image_size(meta.Rows, meta.Columns, path)
    if meta.BitsStored is not None and not 1 <= meta.BitsStored <= 32:
        raise _refuse(path, f"BitsStored {meta.BitsStored} is outside 1..32", "corrupt")
    body = meta.BodyPartExamined
    if body is not None and not any(w in body.upper() for w in _CHEST_WORDS):
        meta.warnings.append("non_chest_body_part")
    if meta.ViewPosition in LATERAL_VIEWS:
        meta.warnings.append("lateral_view")
    return meta


@_quiet
def read_dicom(path: str | PathLike[str], apply_voi: bool = True) -> tuple[np.ndarray, DicomMetadata]:
    """Read a single-frame grayscale radiograph.

    Args:
        path: a DICOM Part 10 file (any transfer syntax pydicom and the
            pylibjpeg plugins decode).
        apply_voi: apply the VOI LUT Sequence, or else the first window
            centre/width, when the file has one. ``False`` maps the whole
            BitsStored range linearly.

    Returns:
        ``(image, metadata)``: ``image`` is float32, shape ``(Rows, Columns)``,
        values in ``[0, 1]``, higher = brighter as displayed (MONOCHROME1 is
        inverted).

    Raises:
        PtxsegError: for files that are not DICOM, are truncated or corrupt,
            hold no pixels, several frames or colour, or are another imaging
            modality (see :func:`read_metadata`) — and for nothing else: every
            failure of reading a file is a :class:`PtxsegError` naming it.
    """
    image, meta, _ = read_dicom_dataset(path, apply_voi)
    return image, meta


@_quiet
def read_dicom_dataset(path: str | PathLike[str], apply_voi: bool = True) -> tuple[np.ndarray, DicomMetadata, pydicom.Dataset]:
    """:func:`read_dicom`, plus the dataset itself (for outputs that reference it, such as DICOM SEG)."""
    path = Path(path)
    ds, meta = read_metadata(path)
    with reading(path, "DICOM"):
        try:
            raw = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad pixel data
            reason = f"pixel data cannot be decoded, truncated or corrupt ({type(exc).__name__}: {str(exc)[:200]})"
            raise _refuse(path, reason, "corrupt") from None
        if raw.ndim != 2:
            raise _refuse(path, f"expected a 2-D grayscale image, decoded shape {raw.shape}", "colour")
        check_modality_lut(ds)
        try:
            arr = apply_modality_lut(raw, ds)
        except Exception as exc:  # noqa: BLE001
            raise _refuse(
                path, f"the Modality LUT / rescale cannot be applied ({type(exc).__name__}: {str(exc)[:200]})", "corrupt"
            ) from None
        arr, used_voi_seq = apply_voi_transform(arr, ds, meta.warnings) if apply_voi else (arr, False)
        lo, hi = output_range(ds, np.asarray(arr), used_voi_seq)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise _refuse(path, "pixel values are not finite", "corrupt")
        image = (np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
        if not np.isfinite(image).all():
            raise _refuse(path, "pixel values are not finite (NaN or infinity)", "corrupt")
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        if meta.PhotometricInterpretation == "MONOCHROME1":
            image = 1.0 - image
        return image, meta, ds


def write_dicom(
    path: str | PathLike[str],
    image: np.ndarray,
    *,
    sop_instance_uid: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    patient_id: str = "ANON",
    modality: str = "CR",
    body_part: str | None = "CHEST",
    view_position: str | None = "PA",
    pixel_spacing: tuple[float, float] | None = (0.14, 0.14),
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    patient_sex: str | None = None,
    patient_age: str | None = None,
) -> Path:
    """Write a 2-D grayscale image as an uncompressed single-frame DICOM file, atomically.

    ``image`` is uint8 or uint16 stored values (BitsStored defaults to 8 or 16
    by dtype). MONOCHROME1 writes the values as given: invert them first if
    ``image`` is display-oriented. Used by the synthetic data generators and
    tests to build SIIM-shaped datasets.
    """

    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise PtxsegError(path, f"write_dicom needs a 2-D uint8/uint16 array, got {image.dtype} {image.shape}")
    sop = sop_instance_uid or generate_uid()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else ComputedRadiographyImageStorage
    file_meta.MediaStorageSOPInstanceUID = sop
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID = file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.Modality = modality
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view_position is not None:
        ds.ViewPosition = view_position
    ds.PatientSex = patient_sex or ""
    if patient_age is not None:
        ds.PatientAge = patient_age
    # Type 2 attributes of the CR IOD: present, empty where a synthetic image has nothing to say
    ds.PatientBirthDate = ds.StudyDate = ds.StudyTime = ds.ReferringPhysicianName = ""
    ds.StudyID = ds.AccessionNumber = ""
    ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, 1, "ptxseg synthetic image"
    # rows run towards the patient's left, columns towards the feet: a frontal chest film displayed as usual
    ds.PatientOrientation = ["L", "F"] if view_position in ("PA", "AP") else ""
    ds.Rows, ds.Columns = image.shape
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{pixel_spacing[0]:.6g}", f"{pixel_spacing[1]:.6g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits_alloc = 8 if image.dtype == np.uint8 else 16
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored or bits_alloc
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
