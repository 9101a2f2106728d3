"""The canonical dataset folder and its ``manifest.csv``.

A canonical dataset (written by ``ptxseg convert`` and ``ptxseg synth``)::

    DATASET/
      images/<id>.png     16-bit grayscale, stored size × stored size
      masks/<id>.png      8-bit, 0 = background, 255 = pneumothorax
      manifest.csv        one row per source item (columns below)
      folds.csv           written by ``ptxseg split``

``manifest.csv`` columns:

``id``                 file stem of the image and mask
``source``             source file, relative to the converted folder
``split``              ``train`` or ``test`` as the source layout says
``positive``           1 pneumothorax, 0 none, empty when unknown (no annotation)
``mask_area``          foreground pixels of ``masks/<id>.png`` (stored size)
``qc``                 ``ok`` or ``;``-joined QC tags (see :mod:`ptxseg.data.qc`)
``qc_reason``          the reason for a refused item, else empty
``has_image``          1 when ``images/<id>.png`` was written
``orig_rows``, ``orig_cols``     size of the source image (pixels)
``scale_row``, ``scale_col``     stored pixels per source pixel
``pad_top``, ``pad_left``        zero padding added after scaling (stored pixels)
DICOM metadata         SOPInstanceUID … PatientAge, and ``PixelSpacingRow``/
                       ``PixelSpacingCol`` in mm of the *source* image
                       (stored spacing = source spacing / scale)
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.names import check_name, is_safe_name

META_COLUMNS = (
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "PatientSex",
    "PatientAge",
    "PixelSpacingRow",
    "PixelSpacingCol",
)
MANIFEST_COLUMNS = (
    "id",
    "source",
    "split",
    "positive",
    "mask_area",
    "qc",
    "qc_reason",
    "has_image",
    "orig_rows",
    "orig_cols",
    "scale_row",
    "scale_col",
    "pad_top",
    "pad_left",
    *META_COLUMNS,
)
_INT_COLUMNS = ("positive", "mask_area", "has_image", "orig_rows", "orig_cols", "pad_top", "pad_left")


def write_manifest(path: str | PathLike[str], records: list[dict]) -> pd.DataFrame:
    """Write records as ``manifest.csv`` atomically (columns in canonical order, extras after)."""
    df = pd.DataFrame.from_records(records)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df = df.reindex(columns=[*MANIFEST_COLUMNS, *extra])
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    write_text_atomic(path, df.to_csv(index=False))
    return df


def read_manifest(dataset: str | PathLike[str]) -> pd.DataFrame:
    """Read ``DATASET/manifest.csv`` with identifiers as strings and counts as nullable ints."""
    path = Path(dataset) / "manifest.csv"
    if not path.is_file():
        raise PtxsegError(dataset, "not a ptxseg dataset (no manifest.csv); create one with 'ptxseg convert'")
    with reading(path, "manifest"):
        df = pd.read_csv(path, dtype={"id": str, "PatientID": str, "SOPInstanceUID": str, "PatientAge": str}, encoding="utf-8-sig")
    missing = [c for c in ("id", "split", "positive", "qc", "has_image") if c not in df.columns]
    if missing:
        raise PtxsegError(path, f"manifest lacks columns {', '.join(missing)}")
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    check_ids(df["id"], path)
    return df


def check_ids(ids, where: str | PathLike[str]) -> None:
    """Refuse a table whose ids are not safe file names (``../../x`` must never reach a path)."""
    for image_id in ids:
        if not is_safe_name(image_id):
            check_name(image_id, where)  # raises, naming the file and showing the id
