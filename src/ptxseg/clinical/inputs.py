"""Inputs of the clinical pipeline: which files a command takes (folders, list files), the safe id each
input's outputs are named by, and reading one radiograph with its header checks (:class:`Radiograph`).

One suffix set for every command: :data:`ptxseg.io.images.RADIOGRAPH_SUFFIXES` (DICOM and the raster formats
the reader decodes), and extension-less files that carry the DICOM preamble.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ptxseg.errors import PtxsegError
from ptxseg.io.derived import header_problems, invalid_uids
from ptxseg.io.dicom import is_dicom_file
from ptxseg.io.images import RADIOGRAPH_SUFFIXES, RASTER_SUFFIXES, raster_size, read_radiograph_dataset
from ptxseg.io.names import safe_name

#: list files: one input path per line
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


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
                    if f.is_file() and (f.suffix.lower() in RADIOGRAPH_SUFFIXES or (not f.suffix and is_dicom_file(f))):
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
    if path.suffix.lower() not in RASTER_SUFFIXES and path.is_file():
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
