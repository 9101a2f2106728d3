"""The display transforms of a DICOM radiograph (PS3.3 C.11): the Modality LUT or rescale checked, the VOI LUT
Sequence or window applied, and the range the values can span afterwards — what turns stored values into what a
radiologist sees."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixels import apply_windowing

from ptxseg.errors import PtxsegError


def int_attr(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    """An integer attribute, ``default`` when absent or empty; a non-integer value is a refusal."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PtxsegError(ds.filename or "DICOM", f"{keyword} {str(value)[:40]!r} is not an integer", code="corrupt") from None


def float_attr(ds: pydicom.Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PtxsegError(ds.filename or "DICOM", f"{keyword} {str(value)[:40]!r} is not a number", code="corrupt") from None
    if not np.isfinite(out):
        raise PtxsegError(ds.filename or "DICOM", f"{keyword} is not finite", code="corrupt")
    return out


def check_modality_lut(ds: pydicom.Dataset) -> None:
    """Refuse, with a reason a person can act on, a rescale or Modality LUT that cannot map the stored values."""
    if "ModalityLUTSequence" in ds:
        item = ds.ModalityLUTSequence[0]
        n_entries = int(item.LUTDescriptor[0]) or 65536
        data = item.get("LUTData")
        if data is None:
            have = 0
        elif isinstance(data, bytes | bytearray):  # VR OW: 16-bit words
            have = len(data) // 2
        else:
            have = len(data) if isinstance(data, list | tuple | MultiValue) else 1
        if have < n_entries:
            raise PtxsegError(
                ds.filename or "DICOM", f"Modality LUT holds {have} entries, its descriptor promises {n_entries}", code="corrupt"
            )
    else:
        float_attr(ds, "RescaleSlope", 1.0)
        float_attr(ds, "RescaleIntercept", 0.0)


def output_range(ds: pydicom.Dataset, arr: np.ndarray, used_voi_lut_sequence: bool) -> tuple[float, float]:
    """The value range the pixel values can span after the LUTs applied (PS3.3 C.11).

    Float pixel data (no BitsStored) spans its own minimum and maximum.
    """
    if used_voi_lut_sequence:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "ModalityLUTSequence" in ds:
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        if not 1 <= bits <= 16:
            raise PtxsegError(ds.filename or "DICOM", f"Modality LUT of {bits} bits (expected 8 to 16)", code="corrupt")
        return 0.0, float(2**bits - 1)
    if "BitsStored" not in ds or "PixelData" not in ds:
        return float(np.min(arr)), float(np.max(arr))
    bits = int(ds.BitsStored)
    if int_attr(ds, "PixelRepresentation", 0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = float_attr(ds, "RescaleSlope", 1.0) or 1.0
    intercept = float_attr(ds, "RescaleIntercept", 0.0)
    lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def apply_voi_lut_sequence(arr: np.ndarray, item: pydicom.Dataset) -> np.ndarray:
    """Map values through a VOI LUT (PS3.3 C.11.2.1.1): below the first mapped
    value → first entry, beyond the table → last entry.

    pydicom 3.0.2's ``apply_voi`` indexes with an array of the LUT's *output*
    type, so an 8-bit LUT with more than 256 entries wraps its input (1027 → 3);
    this does the same lookup with a wide index.
    """
    n_entries, first, bits = (int(v) for v in item.LUTDescriptor)
    if not 1 <= bits <= 16:
        raise ValueError(f"VOI LUT of {bits} bits")
    n_entries = n_entries or 65536
    data = item.LUTData
    if isinstance(data, bytes | bytearray):  # VR OW
        lut = np.frombuffer(data, dtype="<u2")[:n_entries]
    else:
        lut = np.asarray(data if isinstance(data, list | tuple) else [data], dtype=np.int64)
    if lut.size == 0:
        raise ValueError("empty VOI LUT")
    index = np.clip(np.asarray(arr, dtype=np.int64) - first, 0, lut.size - 1)
    return lut[index].astype(np.float64)


def apply_voi_transform(arr: np.ndarray, ds: pydicom.Dataset, warnings: list[str]) -> tuple[np.ndarray, bool]:
    """The VOI LUT Sequence or the first window applied; ``(values, used_lut_sequence)``.

    A VOI that cannot be applied (an empty or malformed LUT, WindowWidth < 1,
    non-numeric values) is ignored with the warning ``voi_ignored`` (appended to ``warnings``): the pixels
    are fine, only the suggested display window is broken, so the whole stored
    range is used instead.
    """
    try:
        if ds.get("VOILUTSequence"):
            return apply_voi_lut_sequence(arr, ds.VOILUTSequence[0]), True
        if "WindowCenter" in ds and "WindowWidth" in ds:
            width = ds.WindowWidth[0] if isinstance(ds.WindowWidth, MultiValue) else ds.WindowWidth
            center = ds.WindowCenter[0] if isinstance(ds.WindowCenter, MultiValue) else ds.WindowCenter
            if not (np.isfinite(float(width)) and np.isfinite(float(center)) and float(width) >= 1):
                raise ValueError(f"window width {width!r} / centre {center!r}")
            return apply_windowing(arr, ds, index=0), False
    except Exception:  # noqa: BLE001 - any broken VOI falls back to the stored range
        warnings.append("voi_ignored")
    return arr, False
