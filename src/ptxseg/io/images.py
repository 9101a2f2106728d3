"""Read any radiograph file (DICOM, PNG, JPEG) and write the canonical PNGs.

:func:`read_radiograph` is the one entry point the rest of ptxseg uses to load
an image: it tells DICOM from raster files by content (the ``DICM`` magic),
not by extension, and returns the same float32 ``[0, 1]`` display-oriented
image either way.
"""

from __future__ import annotations

import functools
import re
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import write_bytes_atomic
from ptxseg.io.dicom import DicomMetadata, is_dicom_file, read_dicom_dataset
from ptxseg.limits import check_image_size, max_pixels

#: the one suffix set of ptxseg: raster formats the reader decodes, DICOM files, and both (every command's inputs)
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
RADIOGRAPH_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
_MAGIC = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def guard_reads(what: str):
    """Decorator: the wrapped reader's first argument is a path, and any failure reading it is a :class:`PtxsegError`."""

    def wrap(fn):
        @functools.wraps(fn)
        def guarded(path, *args, **kwargs):
            with reading(path, what):
                return fn(path, *args, **kwargs)

        return guarded

    return wrap


def raster_kind(head: bytes) -> str | None:
    """The raster format (``PNG``, ``JPEG``, ``TIFF``, ``BMP``) a file's first bytes announce, or None."""
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def _raster_kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return raster_kind(head)


#: OpenCV's reduced-resolution reads, by factor: a JPEG is decoded straight at 1/f (libjpeg's DCT scaling)
_REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def reduction(rows: int, cols: int, reduce_to: int | None) -> int:
    """The largest of 8, 4, 2 by which an image of ``rows × cols`` can be decoded while its longest side stays at
    least ``reduce_to`` pixels (1: decode in full, as with ``reduce_to`` None)."""
    if not reduce_to:
        return 1
    return next((f for f in (8, 4, 2) if max(rows, cols) // f >= reduce_to), 1)


def raster_size(path: str | PathLike[str]) -> tuple[int, int]:
    """(rows, cols) a raster file's header declares, without decoding (Pillow's header parse)."""
    return _header_size(Path(path))


def _header_size(path: Path) -> tuple[int, int]:
    """(rows, cols) declared by a raster file's header, read without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # lazy: parses the header only
            cols, rows = im.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard (over 2 × 89 MP) fires first
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found[1]):,} pixels" if found else "too many pixels"
        raise PtxsegError(
            path, f"header declares {declared}, more than the {max_pixels():,}-pixel limit; refused before decoding", code="too_large"
        ) from None
    return rows, cols


@guard_reads("image")
def read_image(path: str | PathLike[str], radiograph: bool = True, reduce_to: int | None = None) -> np.ndarray:
    """Read a raster image (PNG/JPEG/TIFF/BMP, 8 or 16 bit) as float32 H×W in ``[0, 1]``.

    The size the header declares is checked against :mod:`ptxseg.limits` before
    the pixels are decoded; the EXIF orientation of a photo is applied (a
    rotated or mirrored JPEG must not swap the patient's sides). Colour images
    whose three channels are equal are read as grayscale; others are converted
    with OpenCV's luma weights.

    Args:
        radiograph: refuse images too small to be a radiograph (under
            ``ptxseg.limits.MIN_RADIOGRAPH_SIDE`` on a side); masks pass False.
        reduce_to: decode a large image at 1/2, 1/4 or 1/8 of its size (:func:`reduction`), its longest side
            still at least this many pixels: a JPEG straight from its DCT coefficients (no full-size image is
            ever held), other formats decoded and then reduced (area averaging). None: full size.

    Raises:
        PtxsegError: if the file is not an image OpenCV can decode, or is too
            small or too large — and for nothing else.
    """
    path = Path(path)
    if not path.is_file():
        raise PtxsegError(path, "no such file" if not path.exists() else "not a regular file", code="missing")
    if _raster_kind(path) is None:
        raise PtxsegError(path, "not an image file (PNG, JPEG, TIFF, BMP) or DICOM", code="not_image")
    try:
        rows, cols = _header_size(path)
    except PtxsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a broken header
        raise PtxsegError(path, f"image header cannot be read, truncated or corrupt ({type(exc).__name__})", code="corrupt") from None
    if radiograph or rows * cols > max_pixels():
        check_image_size(rows, cols, path)  # too small to be a radiograph; more pixels than the limit
    factor = reduction(rows, cols, reduce_to)
    if factor > 1 and _raster_kind(path) == "JPEG":  # 8-bit by nature: the reduced read loses nothing
        arr = cv2.imread(str(path), _REDUCED[factor])  # grayscale by OpenCV's luma weights; EXIF applied
    else:
        arr = _gray(cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR))  # applies the EXIF orientation
        if factor > 1 and arr is not None:
            arr = cv2.resize(arr, (arr.shape[1] // factor, arr.shape[0] // factor), interpolation=cv2.INTER_AREA)
    if arr is None:
        raise PtxsegError(path, "image cannot be decoded (truncated or corrupt)", code="corrupt")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise PtxsegError(path, f"unsupported pixel type {arr.dtype}; expected 8- or 16-bit", code="not_image")
    return (arr.astype(np.float32) / scale).astype(np.float32)


def _gray(arr: np.ndarray | None) -> np.ndarray | None:
    """One channel: a colour image whose channels are equal is taken as it is, another by OpenCV's luma weights."""
    if arr is None or arr.ndim == 2:
        return arr
    if arr.shape[2] == 1 or (np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 1], arr[:, :, 2])):
        return arr[:, :, 0]
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2GRAY if arr.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def read_radiograph(path: str | PathLike[str], apply_voi: bool = True) -> tuple[np.ndarray, DicomMetadata]:
    """Read a DICOM or raster radiograph as float32 H×W in ``[0, 1]``, brighter = whiter.

    Returns the image and its metadata; for raster files only ``Rows`` and
    ``Columns`` are known, and ``SOPInstanceUID`` is the file stem.

    Raises:
        PtxsegError: for a file that is neither an acceptable DICOM nor an image.
    """
    image, meta, _ = read_radiograph_dataset(path, apply_voi)
    return image, meta


@guard_reads("radiograph")
def read_radiograph_dataset(
    path: str | PathLike[str], apply_voi: bool = True, reduce_to: int | None = None
) -> tuple[np.ndarray, DicomMetadata, Any]:
    """:func:`read_radiograph` plus the pydicom Dataset of a DICOM input (None for a raster file). ``reduce_to``:
    a raster file is decoded reduced (:func:`read_image`); a DICOM always in full, since what is derived from
    it (a SEG) must lie on its own pixel grid.

    The one step every command reads an input radiograph through (header and
    pixels): every failure is a :class:`PtxsegError` naming the file, so a
    batch records it as that input's error and goes on.
    """
    path = Path(path)
    if not path.is_file():
        raise PtxsegError(path, "no such file" if not path.exists() else "not a regular file", code="missing")
    if is_dicom_file(path) or (_raster_kind(path) is None and path.suffix.lower() in (".dcm", ".dicom")):
        return read_dicom_dataset(path, apply_voi=apply_voi)  # a .dcm without DICM is refused with the reader's reason
    image = read_image(path, reduce_to=reduce_to)
    meta = DicomMetadata(SOPInstanceUID=path.stem, Rows=image.shape[0], Columns=image.shape[1])
    return image, meta, None


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """A ``[0, 1]`` float image as it reads back after 8-bit baseline JPEG encoding at ``quality`` (1–100), float32.

    Used to put images of several sources (lossless DICOMs, lossy JPEGs) through one last compression step, so
    a model cannot tell them apart by their compression.
    """
    gray = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise PtxsegError("jpeg", f"OpenCV could not encode a {gray.shape} image as JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Quantise a ``[0, 1]`` float image to uint16 (values outside are clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


def write_png(path: str | PathLike[str], array: np.ndarray, compression: int = 3) -> Path:
    """Write a 2-D uint8/uint16 array as a grayscale PNG, or an H×W×3 uint8 array as an RGB PNG, atomically.

    ``compression`` is zlib's level (0–9): 3 by default; 1 for pictures written on a latency budget (an
    overlay: twice as fast to encode, a few % larger).

    The PNG is encoded in memory and its bytes written and flushed, so a full
    disk raises :class:`OSError` (``ENOSPC``) instead of leaving a truncated file
    (``cv2.imwrite`` can report success after libpng failed to write).
    """
    rgb = array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    if not rgb and (array.ndim != 2 or array.dtype not in (np.uint8, np.uint16)):
        raise PtxsegError(path, f"write_png needs a 2-D uint8/uint16 or H×W×3 uint8 array, got {array.dtype} {array.shape}")
    if rgb:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise PtxsegError(path, "could not encode PNG")
    write_bytes_atomic(path, buf.tobytes())
    return Path(path)


def read_mask(path: str | PathLike[str]) -> np.ndarray:
    """Read a mask image as uint8 0/1.

    Foreground is at least half the image's maximum, so 0/255 masks, 0/1 masks
    and JPEG masks with compression noise all read correctly.
    """
    image = read_image(path, radiograph=False)
    peak = float(image.max())
    if peak == 0.0:
        return np.zeros(image.shape, dtype=np.uint8)
    return (image >= peak / 2).astype(np.uint8)
