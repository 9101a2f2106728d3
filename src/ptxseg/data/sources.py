"""The source layouts ``ptxseg convert`` reads (``kaggle``, ``png``, ``folders``; see :mod:`ptxseg.data.convert`):
which layout a folder holds, and the items to convert — image, annotation, split, the source manifest's columns —
with unsafe and duplicate ids refused or renamed before anything is read."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ptxseg.data.manifest import MANIFEST_COLUMNS
from ptxseg.errors import PtxsegError, reading
from ptxseg.io.images import RADIOGRAPH_SUFFIXES
from ptxseg.io.names import check_name, is_safe_name, safe_name
from ptxseg.io.rle import SIIM_SHAPE, read_rle_csv

#: source manifest columns with a canonical name of their own
SOURCE_COLUMNS = {"patient": "PatientID", "view": "ViewPosition"}
_PNG_NAME = re.compile(r"^(?P<split>train|test)_(?P<kind>image|mask)_(?P<id>.+)_(?P<y>[01])\.png\Z", re.IGNORECASE)


@dataclass
class Item:
    """One source item to convert: an image, its annotation, or both."""

    id: str
    source: str  # path relative to the source root ("" when there is no image file)
    split: str
    image_path: str | None = None
    mask_path: str | None = None  # png and folders layouts
    runs: tuple[np.ndarray, np.ndarray] | None = None  # kaggle layout, 0-based column-major
    rle_shape: tuple[int, int] | None = None
    label: int | None = None  # annotation's own positive flag, None when unknown
    tags: list[str] = field(default_factory=list)
    unsafe_reason: str = ""  # why the source id was refused as a file name (tag unsafe_id)
    extra: dict = field(default_factory=dict)  # manifest columns from the source's own manifest (folders layout)
    ignore_value: int | None = None  # mask value meaning "unknown" (folders layout)
    lung_mask_path: str | None = None  # a lung-field mask beside a pneumothorax annotation (LUNG_MASK_DIR)


def detect_layout(src: Path) -> Literal["kaggle", "png", "folders"]:
    """``png`` if ``src`` has ``*/png_images``, ``folders`` if it has ``images/`` and ``masks/``, else ``kaggle``
    if it holds ``.dcm`` files, or image files and an ``*rle*.csv[.gz]``."""
    if any(src.glob("*/png_images")):
        return "png"
    if (src / "images").is_dir() and (src / "masks").is_dir():
        return "folders"
    if next(src.rglob("*.dcm"), None) is not None:
        return "kaggle"
    has_rle = any(next(src.rglob(pat), None) is not None for pat in ("*rle*.csv", "*rle*.csv.gz"))
    if has_rle and any(next(src.rglob(f"*{suffix}"), None) is not None for suffix in RADIOGRAPH_SUFFIXES):
        return "kaggle"  # films re-encoded as PNG/JPEG, named by ImageId, beside the RLE file
    raise PtxsegError(
        src, "unknown layout: no */png_images folder, no images/ + masks/ folders, no .dcm files and no images beside an RLE CSV"
    )


def _find_rle_csv(src: Path) -> Path:
    found = sorted(p for pat in ("*rle*.csv", "*rle*.csv.gz") for p in src.rglob(pat))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise PtxsegError(src, f"{what} RLE CSV found in the source folder; pass --rle-csv")
    return found[0]


def _mark_duplicates(items: list[Item]) -> list[Item]:
    """Refuse ids that are not safe file names (tagged ``unsafe_id``, renamed to a hash so the manifest can name
    them; nothing is read or written for them); rename and tag second and later uses of an id."""
    uses: Counter = Counter()
    for item in items:
        if not is_safe_name(item.id):
            try:
                check_name(item.id, item.source or "ImageId")
            except PtxsegError as exc:
                item.unsafe_reason = str(exc)
            item.tags.append("unsafe_id")
            item.id = safe_name(item.id)
        uses[item.id] += 1
        if uses[item.id] > 1:
            item.tags.append("duplicate_id")
            item.id = f"{item.id}__dup{uses[item.id] - 1}"
    return items


#: a Kaggle-layout source may hold lung-field masks, ``<LUNG_MASK_DIR>/<ImageId>.png`` at the image's size (as
#: ``ptxseg synth`` writes them): conversion stores them in ``lungs/`` with the right lung 1 and the left 2
LUNG_MASK_DIR = "lung-masks"


def kaggle_items(src: Path, rle_csv: Path | None, rle_format: str = "auto", rle_shape: tuple[int, int] = SIIM_SHAPE) -> list[Item]:
    """Items of a Kaggle-layout tree: DICOM (or PNG/JPEG) files joined with RLE annotations by ImageId (the file
    stem), and with lung-field masks of ``LUNG_MASK_DIR`` when the tree has them.

    ``rle_shape`` is the (rows, cols) grid the RLE strings are written on: the
    native image size (1024×1024 for SIIM).
    """
    rle_csv = rle_csv or _find_rle_csv(src)
    masks = read_rle_csv(rle_csv, shape=rle_shape, fmt=rle_format)  # type: ignore[arg-type]
    items = []
    seen_ids = set()
    # DICOMs named by SOPInstanceUID, or the same films re-encoded as PNG/JPEG named by ImageId
    images = (p for p in src.rglob("*") if p.suffix.lower() in RADIOGRAPH_SUFFIXES and not p.name.startswith("."))
    for path in sorted(p for p in images if p.is_file() and LUNG_MASK_DIR not in p.relative_to(src).parts):
        rel = path.relative_to(src)
        image_id = path.stem
        split = "test" if any("test" in part.lower() for part in rel.parts[:-1]) else "train"
        item = Item(id=image_id, source=str(rel), split=split, image_path=str(path))
        if image_id in masks:
            item.runs, item.rle_shape = masks.runs(image_id), masks.shape
            item.label = int(masks.is_positive(image_id))
        lungs = src / LUNG_MASK_DIR / f"{image_id}.png"
        if is_safe_name(image_id) and lungs.is_file():
            item.lung_mask_path = str(lungs)
        seen_ids.add(image_id)
        items.append(item)
    for image_id in masks:
        if image_id not in seen_ids:
            items.append(
                Item(
                    id=image_id,
                    source="",
                    split="train",
                    label=int(masks.is_positive(image_id)),
                    tags=["mask_without_image"],
                )
            )
    return _mark_duplicates(items)


def png_items(src: Path) -> list[Item]:
    """Items of the published PNG layout (``<split>/png_images`` + ``<split>/png_masks``)."""
    items: dict[tuple[str, str], Item] = {}
    for split in ("train", "test"):
        for kind, folder in (("image", "png_images"), ("mask", "png_masks")):
            for path in sorted((src / split / folder).glob("*.png")):
                m = _PNG_NAME.match(path.name)
                if m is None or m["kind"].lower() != kind:
                    raise PtxsegError(path, f"name does not follow {split}_{kind}_<id>_<y>.png")
                key = (split, m["id"])
                item = items.setdefault(key, Item(id=m["id"], source="", split=split, label=int(m["y"])))
                if kind == "image":
                    item.image_path, item.source = str(path), str(path.relative_to(src))
                else:
                    item.mask_path = str(path)
                    if item.label != int(m["y"]):
                        item.tags.append("label_mask_disagree")
    out = []
    for item in items.values():
        if item.image_path is None:
            item.tags.append("mask_without_image")
        out.append(item)
    return _mark_duplicates(out)


def _source_manifest(src: Path, stratify: str | None) -> dict[str, dict]:
    """Rows of ``SRC/manifest.csv`` by id, as manifest columns (``{}`` when the file is absent)."""

    path = src / "manifest.csv"
    if not path.is_file():
        if stratify:
            raise PtxsegError("--stratify", f"needs {path} with a {stratify!r} column")
        return {}
    with reading(path, "manifest"):
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "id" not in table.columns:
        raise PtxsegError(path, "lacks an 'id' column")
    if stratify and stratify not in table.columns:
        raise PtxsegError(path, f"has no {stratify!r} column to stratify by (columns: {', '.join(table.columns)})")
    if table["id"].duplicated().any():
        raise PtxsegError(path, f"id {table['id'][table['id'].duplicated()].iloc[0]!r} appears twice")
    rows = {}
    for rec in table.to_dict("records"):
        row = {}
        for key, value in rec.items():
            if key == "id":
                continue
            # a source column never overwrites one that convert computes (e.g. a data-source "source" column)
            name = SOURCE_COLUMNS.get(key, key if key not in MANIFEST_COLUMNS or key == "split" else f"source_{key}")
            row[name] = value
        if stratify:
            row["stratum"] = rec[stratify]
        rows[rec["id"]] = row
    return rows


def source_domains(src: Path) -> dict[str, str]:
    """id → ``domain`` from ``SRC/manifest.csv`` when it has both columns (``ptxseg synth`` writes one beside its
    kaggle and png layouts); ``{}`` otherwise, so that a source's own differently shaped manifest is left alone."""
    path = src / "manifest.csv"
    if not path.is_file():
        return {}
    with reading(path, "manifest"):
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if not {"id", "domain"} <= set(table.columns):
        return {}
    return dict(zip(table["id"], table["domain"], strict=True))


def folder_items(src: Path, stratify: str | None = None) -> list[Item]:
    """Items of the ``folders`` layout: ``images/<id>.*`` paired with ``masks/<id>.png`` by file stem."""
    masks = {p.stem: p for p in sorted((src / "masks").iterdir()) if p.suffix.lower() == ".png"}
    meta = _source_manifest(src, stratify)
    items, seen = [], set()
    for path in sorted((src / "images").iterdir()):
        if path.suffix.lower() not in RADIOGRAPH_SUFFIXES or path.name.startswith("."):
            continue
        extra = dict(meta.get(path.stem, {}))
        split = extra.pop("split", "") or "train"
        if split not in ("train", "test"):
            raise PtxsegError(src / "manifest.csv", f"split of {path.stem!r} must be train or test, got {split!r}")
        item = Item(id=path.stem, source=str(path.relative_to(src)), split=split, image_path=str(path), extra=extra)
        if path.stem in masks:
            item.mask_path = str(masks[path.stem])
        seen.add(path.stem)
        items.append(item)
    for stem, path in masks.items():
        if stem not in seen:
            items.append(Item(id=stem, source="", split="train", mask_path=str(path), tags=["mask_without_image"]))
    return _mark_duplicates(items)


# ------------------------------------------------------------------ one item
