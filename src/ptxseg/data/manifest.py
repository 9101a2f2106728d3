"""The canonical dataset folder and its ``manifest.csv``.

A canonical dataset (written by ``ptxseg convert`` and ``ptxseg synth``)::

    DATASET/
      images/<id>.png     16-bit grayscale, stored size × stored size
      masks/<id>.png      8-bit, 0 = background, 255 = pneumothorax
      lungs/<id>.png      8-bit lung fields: 0 background, 1 the patient's right lung, 2 the left (phantoms, folders layout)
      ignore/<id>.png     8-bit, 255 = unknown: left out of training losses and validation metrics (optional)
      manifest.csv        one row per source item (columns below)
      dataset.json        how the images were stored: side, aspect (pad/stretch), DICOM VOI
      folds.csv           written by ``ptxseg split``

``manifest.csv`` columns:

``id``                 file stem of the image and mask
``source``             source file, relative to the converted folder
``split``              ``train`` or ``test`` as the source layout says
``positive``           1 pneumothorax, 0 none, empty when unknown (no annotation, or a lungs-only dataset)
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
``lung_area``, ``ignore_area``   foreground pixels of ``lungs/<id>.png`` and ``ignore/<id>.png`` when converted
                       from lung-field annotations / masks with unknown regions (folders layout)
``stratum``            a group whose share every fold keeps (e.g. adult / child), when the source names one
``domain``             ``phantom``, ``inserted_lesions`` or ``real`` when the source states it (``ptxseg synth`` and
                       ``sim2real`` do; a source's ``manifest.csv`` may, in any layout): model cards record it
other columns          copied from a folders-layout source's ``manifest.csv``
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import pandas as pd

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.images import read_image
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import check_name, is_safe_name, under

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
_INT_COLUMNS = ("positive", "mask_area", "has_image", "orig_rows", "orig_cols", "pad_top", "pad_left", "lung_area", "ignore_area")


DATASET_FORMAT = "ptxseg-dataset/1"
#: training target → folder of a canonical dataset holding its masks
MASK_DIRS = {"pneumothorax": "masks", "lungs": "lungs"}
#: folder of a canonical dataset holding the optional "unknown" masks (255 = leave out of losses and metrics)
IGNORE_DIR = "ignore"


@dataclass(frozen=True)
class StoredGeometry:
    """How a canonical dataset stored its images: ``size²`` squares, ``aspect`` pad/stretch, DICOM VOI applied or not."""

    size: int
    aspect: str = "pad"
    apply_voi: bool = True


def write_dataset_info(dataset: str | PathLike[str], info: StoredGeometry) -> None:
    """Write ``DATASET/dataset.json`` (the stored geometry a model trained on the dataset records in its card)."""

    write_text_atomic(Path(dataset) / "dataset.json", dumps({"format": DATASET_FORMAT, **asdict(info)}, indent=2))


def read_dataset_info(dataset: str | PathLike[str]) -> StoredGeometry:
    """The stored geometry of a canonical dataset: ``dataset.json``; for datasets written before it existed,
    ``ptxseg convert``'s ``.convert/params.json``, else inferred from the images and the manifest's geometry
    columns (a non-square source stored with equal row/column scales was letterboxed).

    Raises:
        PtxsegError: when the dataset holds no image to measure.
    """

    root = Path(dataset)
    for name, keys in (("dataset.json", ("size", "aspect", "apply_voi")), (".convert/params.json", ("size", "aspect", "apply_voi"))):
        path = root / name
        if path.is_file():
            doc = read_json_object(path)
            try:
                info = StoredGeometry(int(doc["size"]), str(doc.get("aspect", "pad")), bool(doc.get("apply_voi", True)))
            except (KeyError, TypeError, ValueError) as exc:
                raise PtxsegError(path, f"malformed ({type(exc).__name__}: {exc}); expected {', '.join(keys)}") from None
            if info.aspect not in ("pad", "stretch") or not 32 <= info.size <= 8192:
                raise PtxsegError(path, f"aspect must be pad or stretch and size 32..8192, got {info.aspect!r}, {info.size}")
            return info
    manifest = read_manifest(root)
    with_image = manifest[manifest["has_image"] == 1]
    if with_image.empty:
        raise PtxsegError(root, "holds no stored image: cannot tell its stored size")

    size = read_image(under(root / "images", f"{with_image['id'].iloc[0]}.png")).shape[0]
    aspect = "pad"
    if {"orig_rows", "orig_cols", "scale_row", "scale_col"} <= set(manifest.columns):
        odd = with_image[with_image["orig_rows"] != with_image["orig_cols"]]
        if len(odd) and (pd.to_numeric(odd["scale_row"]) - pd.to_numeric(odd["scale_col"])).abs().max() > 1e-9:
            aspect = "stretch"
    return StoredGeometry(int(size), aspect, True)


def write_manifest(path: str | PathLike[str], records: list[dict]) -> pd.DataFrame:
    """Write records as ``manifest.csv`` atomically (columns in canonical order, extras after)."""
    df = pd.DataFrame.from_records(records)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df = df.reindex(columns=[*MANIFEST_COLUMNS, *extra])
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    write_text_atomic(path, df.to_csv(index=False))
    return df


def read_manifest(dataset: str | PathLike[str]) -> pd.DataFrame:
    """Read ``DATASET/manifest.csv`` with identifiers as strings and counts as nullable ints."""
    path = Path(dataset) / "manifest.csv"
    if not path.is_file():
        raise PtxsegError(dataset, "not a ptxseg dataset (no manifest.csv); create one with 'ptxseg convert'")
    with reading(path, "manifest"):
        text = {"id": str, "PatientID": str, "SOPInstanceUID": str, "PatientAge": str, "stratum": str}
        df = pd.read_csv(path, dtype=text, encoding="utf-8-sig")
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


#: what a training image is: a drawn phantom, a real radiograph with an inserted (synthetic) lesion, or a real one
DOMAINS = ("phantom", "inserted_lesions", "real")


def _image_column(dataset: str | PathLike[str], column: str):
    """``column`` of the manifest's rows that have an image, as stripped strings; None when the dataset is gone or
    has no such column."""
    path = Path(dataset) / "manifest.csv"
    if not path.is_file():
        return None
    manifest = read_manifest(dataset)
    if column not in manifest.columns:
        return None
    return manifest.loc[manifest["has_image"] == 1, column].fillna("").astype(str).str.strip()


def dataset_domains(dataset: str | PathLike[str]) -> dict[str, int] | None:
    """The ``domain`` column of a dataset's manifest (one of :data:`DOMAINS`; written by ``ptxseg synth`` and
    ``ptxseg sim2real``, copied by ``convert`` from a source's ``manifest.csv``) as domain → number of images, an
    image without a stated domain counted as ``unstated``; None when the dataset is gone or has no such column."""
    values = _image_column(dataset, "domain")
    if values is None:
        return None
    counts = values.where(values.isin(DOMAINS), "unstated").value_counts()
    return {str(k): int(v) for k, v in counts.items()} or None


def dataset_licences(dataset: str | PathLike[str]) -> dict[str, int] | None:
    """The ``licence`` column of a dataset's manifest (copied there from a folders-layout source) as licence →
    number of images, for model cards; None when the dataset is gone or states no licences."""
    values = _image_column(dataset, "licence")
    if values is None:
        return None
    counts = values[values != ""].value_counts()
    return {str(k): int(v) for k, v in counts.items()} or None
