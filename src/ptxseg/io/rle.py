"""Run-length encoding of binary masks, as used by the SIIM-ACR challenge.

Both formats flatten the mask in **column-major** order (down each column,
then left to right) and list runs of foreground pixels:

``relative``
    SIIM stage-1 ``train-rle.csv``: pairs ``(gap, length)`` where ``gap`` counts
    background pixels since the end of the previous run (the first gap counts
    from pixel 0).
``absolute``
    The Kaggle standard (SIIM stage 2): pairs ``(start, length)`` with a
    1-based ``start``.

``-1`` or an empty string is an empty mask. Everything here is vectorised
numpy: no Python loop runs per pixel or per run.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path

RleFormat = Literal["relative", "absolute"]
FORMATS: tuple[str, ...] = ("relative", "absolute")
SIIM_SHAPE: tuple[int, int] = (1024, 1024)

_EMPTY_TOKENS = frozenset({"", "-1"})


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise PtxsegError("fmt", f"unknown RLE format {fmt!r}; expected one of {', '.join(FORMATS)}", code="rle")


def _parse_values(rle: str, image_id: str) -> np.ndarray:
    """Return the integers of an RLE string (int64, possibly empty)."""
    text = rle.strip()
    if text in _EMPTY_TOKENS:
        return np.empty(0, dtype=np.int64)
    tokens = text.split()
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not (t.lstrip("-").isascii() and t.lstrip("-").isdigit())), None)
        if bad is not None:
            raise PtxsegError(image_id, f"RLE holds a non-integer value {bad[:40]!r}", code="rle") from None
        big = max(tokens, key=len)
        raise PtxsegError(image_id, f"RLE value {big[:40]} is too large for any image", code="rle") from None
    if values.size % 2:
        raise PtxsegError(image_id, f"RLE has an odd number of values ({values.size})", code="rle")
    return values


def rle_to_runs(
    rle: str, shape: tuple[int, int] = SIIM_SHAPE, fmt: RleFormat = "relative", image_id: str = "RLE"
) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate an RLE string into runs.

    Returns:
        ``(starts, lengths)``: int64 arrays of 0-based column-major start
        offsets and run lengths, in the order written.

    Raises:
        PtxsegError: (naming ``image_id``) for non-integers, an odd count,
            negative gaps/lengths, a start before pixel 1, or a run that
            overruns the ``shape[0] * shape[1]`` pixels of the image.
    """
    _check_format(fmt)
    values = _parse_values(rle, image_id)
    n_pixels = int(shape[0]) * int(shape[1])
    if values.size and int(values.max()) > n_pixels:
        # no gap, start or length can exceed the grid; refusing here also keeps the sums below from overflowing int64
        raise PtxsegError(
            image_id,
            f"RLE overruns the image: value {int(values.max())} exceeds its {n_pixels} pixels ({shape[0]}x{shape[1]}, {fmt} format)",
            code="rle",
        )
    first, lengths = values[0::2], values[1::2]
    if (lengths < 0).any():
        raise PtxsegError(image_id, "RLE has a negative run length", code="rle")
    if fmt == "relative":
        if (first < 0).any():
            raise PtxsegError(image_id, "RLE has a negative gap", code="rle")
        # start_i = sum of gaps up to i + sum of lengths before i
        starts = np.cumsum(first) + np.cumsum(lengths) - lengths
    else:
        if (first < 1).any():
            raise PtxsegError(image_id, "RLE has a start below 1 (absolute starts are 1-based)", code="rle")
        starts = first - 1
    if starts.size and int((starts + lengths).max()) > n_pixels:
        end = int((starts + lengths).max())
        raise PtxsegError(
            image_id,
            f"RLE overruns the image: a run ends at pixel {end} of {n_pixels} ({shape[0]}x{shape[1]}, {fmt} format)",
            code="rle",
        )
    return starts, lengths


def runs_to_mask(starts: np.ndarray, lengths: np.ndarray, shape: tuple[int, int] = SIIM_SHAPE) -> np.ndarray:
    """Paint runs (0-based column-major) into a C-contiguous ``uint8`` H×W mask of 0/1.

    Overlapping runs are merged (the union), so runs gathered from several
    annotation rows of one image can be painted in one call. Work is
    proportional to the painted area, not to the image size.
    """
    rows = int(shape[0])
    mask = np.zeros(shape, dtype=np.uint8)
    total = int(lengths.sum())
    if total == 0:
        return mask
    # Flat index of every painted pixel: each run's start repeated along the run, plus 0..len-1.
    offsets = np.cumsum(lengths) - lengths
    flat = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
    mask[flat % rows, flat // rows] = 1
    return mask


def rle_decode(rle: str, shape: tuple[int, int] = SIIM_SHAPE, fmt: RleFormat = "relative", image_id: str = "RLE") -> np.ndarray:
    """Decode an RLE string into a ``uint8`` mask of shape ``shape`` (rows, cols), values 0/1.

    ``-1`` (with or without surrounding spaces) and ``""`` give an all-zero mask.
    Raises :class:`PtxsegError` naming ``image_id`` for a malformed string.
    """
    starts, lengths = rle_to_runs(rle, shape, fmt, image_id)
    return runs_to_mask(starts, lengths, shape)


def mask_to_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(starts, lengths)`` (0-based, column-major) of the non-zero runs of a 2-D mask."""
    if mask.ndim != 2:
        raise PtxsegError("mask", f"expected a 2-D mask, got shape {mask.shape}", code="rle")
    flat = np.ascontiguousarray(mask.T).ravel() != 0
    padded = np.concatenate(([False], flat, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    return starts.astype(np.int64), (ends - starts).astype(np.int64)


def rle_encode(mask: np.ndarray, fmt: RleFormat = "relative") -> str:
    """Encode a 2-D mask (non-zero = foreground) as an RLE string; ``"-1"`` if empty.

    Unlike the challenge's reference encoder, a run that reaches the last
    pixel is written.
    """
    _check_format(fmt)
    starts, lengths = mask_to_runs(mask)
    if starts.size == 0:
        return "-1"
    if fmt == "relative":
        prev_end = np.concatenate(([0], starts[:-1] + lengths[:-1]))
        first = starts - prev_end
    else:
        first = starts + 1
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2], pairs[1::2] = first, lengths
    return " ".join(map(str, pairs.tolist()))


# --------------------------------------------------------------------------- CSV


def _fits_relative(values: np.ndarray, n_pixels: int) -> bool:
    """Whether the values read as a valid relative RLE within ``n_pixels``."""
    return bool((values >= 0).all() and int(values.sum()) <= n_pixels)


def _fits_absolute(values: np.ndarray, n_pixels: int) -> bool:
    """Whether the values read as sorted, non-overlapping absolute runs within ``n_pixels``."""
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any() or (lengths < 0).any():
        return False
    ends = starts + lengths
    return bool((starts[1:] >= ends[:-1]).all() and int(ends.max()) <= n_pixels)


def detect_rle_format(rles: list[str], shape: tuple[int, int] = SIIM_SHAPE, where: str = "RLE CSV") -> RleFormat:
    """Tell which format a set of RLE strings is written in.

    A relative RLE's values sum to at most the image size; an absolute one has
    increasing, non-overlapping runs. A row with two or more runs almost always
    fits only one of these. If every row fits both (e.g. only single-run rows)
    the format cannot be told and a :class:`PtxsegError` asks for it.
    """
    n = int(shape[0]) * int(shape[1])
    rel_ok = rel_bad = abs_bad = 0
    for rle in rles:
        text = rle.strip()
        if text in _EMPTY_TOKENS:
            continue
        try:
            values = np.array(text.split(), dtype=np.int64)
        except (ValueError, OverflowError):
            continue  # reported with its ImageId when decoded
        if values.size % 2 or values.size == 0:
            continue
        rel, ab = _fits_relative(values, n), _fits_absolute(values, n)
        rel_ok += rel
        rel_bad += not rel
        abs_bad += not ab
    if rel_bad == 0 and abs_bad > 0:
        return "relative"
    if abs_bad == 0 and rel_bad > 0:
        return "absolute"
    if rel_bad == 0 and abs_bad == 0:
        if rel_ok == 0:
            return "relative"  # no runs at all: both formats give the same empty masks
        raise PtxsegError(where, "cannot tell the RLE format (every row reads both ways); pass the format explicitly", code="rle")
    # Both have failures: pick the one most rows fit; decoding then names the bad rows.
    return "relative" if rel_bad <= abs_bad else "absolute"


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    # utf-8-sig: a byte-order mark written by spreadsheet programs is not part of the first column's name
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_rows(path: Path) -> list[tuple[str, str]]:
    """Return ``(ImageId, EncodedPixels)`` rows of an RLE CSV (gzip or plain)."""
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise PtxsegError(path, "empty file, expected a header 'ImageId,EncodedPixels'", code="rle_csv")
            names = [h.strip().lower() for h in header]
            try:
                i_id, i_rle = names.index("imageid"), names.index("encodedpixels")
            except ValueError:
                raise PtxsegError(path, f"not an RLE CSV: header {header!r} lacks ImageId and EncodedPixels", code="rle_csv") from None
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) <= max(i_id, i_rle):
                    raise PtxsegError(path, f"line {lineno} has {len(row)} fields, expected {len(names)}", code="rle_csv")
                rows.append((row[i_id].strip(), row[i_rle]))
            return rows
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error, OSError, zlib.error) as exc:
        raise PtxsegError(path, f"not a readable RLE CSV ({type(exc).__name__}: {exc})", code="rle_csv") from None


@dataclass(frozen=True)
class _Runs:
    starts: np.ndarray
    lengths: np.ndarray


class RleMasks(Mapping[str, np.ndarray]):
    """The masks of an RLE CSV, one per ImageId: the **union** of its rows.

    Behaves as a read-only ``dict[ImageId, uint8 mask]``. Rows are parsed and
    validated when the file is read; masks are painted on access, so the
    12,047 SIIM masks (12.6 GB as arrays) cost only their runs in memory.
    """

    def __init__(self, runs: dict[str, _Runs], shape: tuple[int, int], fmt: RleFormat, source: str) -> None:
        self._runs = runs
        self.shape = shape
        self.fmt = fmt
        self.source = source

    def __getitem__(self, image_id: str) -> np.ndarray:
        r = self._runs[image_id]
        return runs_to_mask(r.starts, r.lengths, self.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def runs(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All runs of an image's rows, ``(starts, lengths)``, 0-based column-major."""
        r = self._runs[image_id]
        return r.starts, r.lengths

    def is_positive(self, image_id: str) -> bool:
        """Whether any row of the image has a non-empty run."""
        return bool((self._runs[image_id].lengths > 0).any())

    @property
    def positive_ids(self) -> list[str]:
        """ImageIds whose union mask is non-empty, in file order."""
        return [k for k in self._runs if self.is_positive(k)]


def read_rle_csv(
    path: str | PathLike[str], shape: tuple[int, int] = SIIM_SHAPE, fmt: RleFormat | Literal["auto"] = "auto"
) -> RleMasks:
    """Read an RLE CSV (plain or gzip) into per-image union masks.

    Accepts the challenge's header with leading spaces (``ImageId, EncodedPixels``),
    several rows per image (merged by union) and ``-1`` rows. ``fmt="auto"``
    detects the format for the whole file (see :func:`detect_rle_format`).

    Raises:
        PtxsegError: naming the file for an unreadable CSV, or the ImageId for
            a malformed RLE string.
    """
    path = Path(path)
    if not path.is_file():
        raise PtxsegError(path, "no such file", code="rle_csv")
    rows = _read_rows(path)
    if fmt == "auto":
        fmt = detect_rle_format([r for _, r in rows], shape, where=str(path))
    _check_format(fmt)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for image_id, rle in rows:
        parts.setdefault(image_id, []).append(rle_to_runs(rle, shape, fmt, image_id=f"{path}: {image_id}"))
    runs = {k: _Runs(np.concatenate([s for s, _ in v]), np.concatenate([n for _, n in v])) for k, v in parts.items()}
    return RleMasks(runs, shape, fmt, str(path))


def write_rle_rows(path: str | PathLike[str], rows: Iterable[tuple[str, str]]) -> None:
    """Write already-encoded ``(ImageId, EncodedPixels)`` rows as an RLE CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["ImageId", "EncodedPixels"])
        w.writerows(rows)


def write_rle_csv(
    path: str | PathLike[str], masks: Mapping[str, np.ndarray] | list[tuple[str, np.ndarray]], fmt: RleFormat = "relative"
) -> None:
    """Write ``ImageId,EncodedPixels`` rows atomically, one row per (id, mask); ``-1`` for empty."""
    items = masks.items() if isinstance(masks, Mapping) else masks
    write_rle_rows(path, ((image_id, rle_encode(mask, fmt)) for image_id, mask in items))
