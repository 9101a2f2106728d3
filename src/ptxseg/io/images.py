"""Read any radiograph file (DICOM, PNG, JPEG) and write the canonical PNGs.

:func:`read_radiograph` is the one entry point the rest of ptxseg uses to load
an image: it tells DICOM from raster files by content (the ``DICM`` magic),
not by extension, and returns the same float32 ``[0, 1]`` display-oriented
image either way.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path
from ptxseg.io.dicom import DicomMetadata, is_dicom_file, read_dicom

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_MAGIC = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def _raster_kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def read_image(path: str | PathLike[str]) -> np.ndarray:
    """Read a raster image (PNG/JPEG/TIFF/BMP, 8 or 16 bit) as float32 H×W in ``[0, 1]``.

    Colour images whose three channels are equal are read as grayscale;
    others are converted with OpenCV's luma weights.

    Raises:
        PtxsegError: if the file is not an image OpenCV can decode.
    """
    path = Path(path)
    if _raster_kind(path) is None:
        raise PtxsegError(path, "not an image file (PNG, JPEG, TIFF, BMP) or DICOM", code="not_image")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise PtxsegError(path, "image cannot be decoded (truncated or corrupt)", code="corrupt")
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.shape[2] == 1 or (np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 1], arr[:, :, 2])):
            arr = arr[:, :, 0]
        else:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise PtxsegError(path, f"unsupported pixel type {arr.dtype}; expected 8- or 16-bit", code="not_image")
    return (arr.astype(np.float32) / scale).astype(np.float32)


def read_radiograph(path: str | PathLike[str], apply_voi: bool = True) -> tuple[np.ndarray, DicomMetadata]:
    """Read a DICOM or raster radiograph as float32 H×W in ``[0, 1]``, brighter = whiter.

    Returns the image and its metadata; for raster files only ``Rows`` and
    ``Columns`` are known, and ``SOPInstanceUID`` is the file stem.

    Raises:
        PtxsegError: for a file that is neither an acceptable DICOM nor an image.
    """
    path = Path(path)
    if not path.is_file():
        raise PtxsegError(path, "no such file", code="missing")
    if is_dicom_file(path):
        return read_dicom(path, apply_voi=apply_voi)
    if _raster_kind(path) is None and path.suffix.lower() == ".dcm":
        return read_dicom(path, apply_voi=apply_voi)  # refused with the DICOM reader's reason
    image = read_image(path)
    meta = DicomMetadata(SOPInstanceUID=path.stem, Rows=image.shape[0], Columns=image.shape[1])
    return image, meta


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Quantise a ``[0, 1]`` float image to uint16 (values outside are clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


def write_png(path: str | PathLike[str], array: np.ndarray) -> Path:
    """Write a 2-D uint8/uint16 array as a grayscale PNG, or an H×W×3 uint8 array as an RGB PNG, atomically."""
    rgb = array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    if not rgb and (array.ndim != 2 or array.dtype not in (np.uint8, np.uint16)):
        raise PtxsegError(path, f"write_png needs a 2-D uint8/uint16 or H×W×3 uint8 array, got {array.dtype} {array.shape}")
    if rgb:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
            raise PtxsegError(path, "could not write PNG")
    return Path(path)


def read_mask(path: str | PathLike[str]) -> np.ndarray:
    """Read a mask image as uint8 0/1.

    Foreground is at least half the image's maximum, so 0/255 masks, 0/1 masks
    and JPEG masks with compression noise all read correctly.
    """
    image = read_image(path)
    peak = float(image.max())
    if peak == 0.0:
        return np.zeros(image.shape, dtype=np.uint8)
    return (image >= peak / 2).astype(np.uint8)
