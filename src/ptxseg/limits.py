"""Explicit resource limits: what a file or a setting may ask ptxseg to allocate.

A 405 KB PNG can declare 20000×20000 pixels, a YAML file can expand
exponentially through aliases, and a single config value can ask for a 65536²
network input. Each such request is checked against a limit here *before*
memory is allocated, and refused with one line naming the file or setting.

The pixel limit is the one a user may need to raise (a very large detector
image): set ``PTXSEG_MAX_PIXELS`` in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from os import PathLike

from ptxseg.errors import PtxsegError

#: largest radiograph decoded, in pixels (64 MP: a 43 cm detector at 0.05 mm is 8600² ≈ 74 MP, at 0.1 mm 18.5 MP)
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
#: the service's pixel limit per radiograph: the largest chest detectors are about 4,300 × 4,300 (18.5 MP); an
#: upload declaring more is refused from its header, before any pixel is decoded
SERVICE_MAX_PIXELS = 25_000_000
#: the service's pixel budget per request (all its files together): four of the largest chest films
SERVICE_MAX_REQUEST_PIXELS = 80_000_000
#: smallest side of an image accepted as a radiograph (pixels)
MIN_RADIOGRAPH_SIDE = 32
#: largest network input side (pixels); the published recipes use at most 1024
MAX_NETWORK_SIZE = 4096
#: largest side of an RLE / evaluation grid (pixels)
MAX_GRID_SIDE = 16384
#: largest config file read (bytes)
MAX_CONFIG_BYTES = 1024 * 1024


_LIMIT: ContextVar[int | None] = ContextVar("ptxseg_pixel_limit", default=None)


@contextmanager
def pixel_limit(limit: int) -> Iterator[None]:
    """Within this block (this thread or task only), :func:`max_pixels` is ``limit``: how a service applies its
    own, smaller limit to the files it reads without changing the process's."""
    if limit <= 0:
        raise ValueError("a pixel limit must be positive")
    token = _LIMIT.set(int(limit))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def max_pixels() -> int:
    """The pixel limit: the one a :func:`pixel_limit` block sets, else ``PTXSEG_MAX_PIXELS`` when set (a positive
    integer), else :data:`DEFAULT_MAX_PIXELS`."""
    scoped = _LIMIT.get()
    if scoped is not None:
        return scoped
    raw = os.environ.get("PTXSEG_MAX_PIXELS")
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise PtxsegError("PTXSEG_MAX_PIXELS", f"must be a positive integer, got {raw!r}", code="bad_setting")
    return value


def check_image_size(rows: object, cols: object, where: str | PathLike[str]) -> tuple[int, int]:
    """``(rows, cols)`` as ints if they describe an acceptable radiograph grid, else a :class:`PtxsegError`.

    Refuses non-integers, sides below :data:`MIN_RADIOGRAPH_SIDE` (not a
    radiograph) and more than :func:`max_pixels` pixels (checked from the header,
    before decoding).
    """
    try:
        r, c = int(rows), int(cols)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise PtxsegError(where, f"image size {rows!r}×{cols!r} is not a pair of integers", code="corrupt") from None
    if min(r, c) < MIN_RADIOGRAPH_SIDE:
        raise PtxsegError(
            where, f"{r}×{c} pixels is too small to be a radiograph (at least {MIN_RADIOGRAPH_SIDE} on each side)", code="too_small"
        )
    limit = max_pixels()
    if r * c > limit:
        raise PtxsegError(
            where,
            f"{r}×{c} = {r * c:,} pixels is more than the {limit:,}-pixel limit ({_raise_hint()})",
            code="too_large",
        )
    return r, c


def _raise_hint() -> str:
    return "the service's --max-pixels" if _LIMIT.get() is not None else "raise it with PTXSEG_MAX_PIXELS if this is real"


def check_grid_side(value: int, option: str) -> int:
    """An RLE/evaluation grid side in ``1..MAX_GRID_SIDE`` (an option value), else a :class:`PtxsegError`."""
    if not 1 <= int(value) <= MAX_GRID_SIDE:
        raise PtxsegError(option, f"must be between 1 and {MAX_GRID_SIDE} pixels, got {value}", code="bad_setting")
    return int(value)
