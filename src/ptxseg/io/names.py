"""File names made from data: the one guard between identifiers read from files and paths on disk.

Identifiers inside files — a DICOM's SOPInstanceUID, an RLE CSV's ImageId, a
manifest's ``id``, a file stem — are untrusted: ``../../other_model/best``, an
absolute path, a 400-character string or one holding a NUL or a newline must
never become a path. Every name ptxseg derives from data goes through this
module:

* :func:`check_name` accepts only a *safe name* (letters, digits, ``.``, ``_``,
  ``-``; starts with a letter or digit; at most :data:`MAX_NAME_CHARS`
  characters) and refuses anything else with a :class:`PtxsegError`. For ids
  that name files of a dataset (ImageIds, manifest ids): a refused id is bad data.
* :func:`safe_name` maps any identifier to a safe name: itself when safe, else a
  readable sanitised prefix plus a hash of the original, so distinct ids stay
  distinct. For outputs named after an input (``ptxseg predict``).
* :func:`under` joins a folder and a name and checks the result stays inside
  the folder (after resolving ``..`` and symbolic links).
"""

from __future__ import annotations

import hashlib
import os
import re
from os import PathLike
from pathlib import Path

from ptxseg.errors import PtxsegError

#: longest safe name: DICOM UIDs have at most 64 characters; outputs add suffixes
#: such as ``_overlay.png`` and must stay below the usual 255-byte file name limit.
MAX_NAME_CHARS = 128
_SAFE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def is_safe_name(name: object) -> bool:
    """Whether ``name`` is a str usable as a file name as is (see the module docstring)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _SAFE.match(name) is not None


def check_name(name: object, where: str | PathLike[str] = "id") -> str:
    """``name`` if it is a safe file name; else :class:`PtxsegError` naming ``where`` and showing the name (escaped)."""
    if is_safe_name(name):
        return name  # type: ignore[return-value]
    shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    raise PtxsegError(
        where,
        f"id {shown} is not a safe file name (letters, digits, '.', '_', '-'; at most {MAX_NAME_CHARS} characters)",
        code="unsafe_id",
    )


def safe_name(identifier: object) -> str:
    """A safe file name for any identifier: itself when safe, else ``<sanitised prefix>-h<16 hex of its SHA-256>``.

    Deterministic (a re-run names the same input the same way) and injective in
    practice (the hash covers the whole identifier).
    """
    text = "" if identifier is None else str(identifier)
    if is_safe_name(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:40]
    return f"{prefix}-h{digest}" if prefix else f"h{digest}"


def under(folder: str | PathLike[str], *parts: str) -> Path:
    """``folder / parts...``, refused unless it resolves to a path inside ``folder``.

    The last line of defence for every output written under an output folder:
    with names from :func:`safe_name`/:func:`check_name` it always holds.
    """
    base = Path(folder)
    path = base.joinpath(*parts)
    root = Path(os.path.realpath(base))
    real = Path(os.path.realpath(path))
    if real == root or not real.is_relative_to(root):
        raise PtxsegError(path, f"resolves outside its folder {base}", code="unsafe_id")
    return path


def hashed_uid(uid: object) -> str | None:
    """A short SHA-256 of a DICOM UID, for logs: the same instance is recognisable, the patient is not."""
    return None if not uid else hashlib.sha256(str(uid).encode()).hexdigest()[:12]
