"""``ptxseg convert``: build the canonical dataset folder from a source layout.

Three source layouts are understood:

``kaggle``
    a tree of ``<SOPInstanceUID>.dcm`` files (or the same films as ``<ImageId>.png/.jpg``) plus an RLE CSV
    (either format). An image without an RLE row is kept with an unknown label (``positive`` empty: an
    unlabelled film, see ``ptxseg split --unlabelled``).
    A file below a folder whose name contains ``test`` is in the test split.
``png``
    the PNG layout of published work: ``train/png_images/train_image_<id>_<y>.png``
    with ``train/png_masks/train_mask_<id>_<y>.png`` (and ``test/`` likewise),
    ``y`` = 1 when a pneumothorax is present.
``folders``
    ``images/<id>.<png|jpg|jpeg|dcm>`` with ``masks/<id>.png`` of the same size and an optional
    ``manifest.csv`` (``id``; ``patient``, ``view``, ``split`` and any other columns are kept). The masks are
    pneumothorax masks or, with ``target="lungs"``, lung-field annotations (stored as ``lungs/`` with the
    patient's right lung 1 and left lung 2); pixels equal to ``ignore_value`` (127 by default: an annotator's
    "unknown" region) are stored in ``ignore/`` and left out of training losses and validation metrics.

Each item is converted independently (in parallel with ``workers > 1``); the
item's manifest row is saved as ``.convert/items/<id>.json`` after its PNGs,
all written atomically, so an interrupted run resumes where it stopped and
never leaves a half-written file. See :mod:`ptxseg.data.manifest` for the
output format and :mod:`ptxseg.data.qc` for the QC tags.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ptxseg.data.geometry import ASPECTS, Aspect, resize_image, resize_mask
from ptxseg.data.manifest import MANIFEST_COLUMNS, META_COLUMNS, StoredGeometry, write_dataset_info, write_manifest
from ptxseg.data.qc import REFUSAL_TAGS, image_warnings, join_tags
from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.dicom import DicomMetadata
from ptxseg.io.images import RADIOGRAPH_SUFFIXES, jpeg_roundtrip, read_image, read_mask, read_radiograph, to_uint16, write_png
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import check_name, is_safe_name, safe_name, under
from ptxseg.io.rle import SIIM_SHAPE, read_rle_csv, runs_to_mask
from ptxseg.measure.lung_sides import side_labels
from ptxseg.parallel import process_map

Layout = Literal["auto", "kaggle", "png", "folders"]
Target = Literal["pneumothorax", "lungs"]
#: source manifest columns with a canonical name of their own
SOURCE_COLUMNS = {"patient": "PatientID", "view": "ViewPosition"}
_PNG_NAME = re.compile(r"^(?P<split>train|test)_(?P<kind>image|mask)_(?P<id>.+)_(?P<y>[01])\.png\Z", re.IGNORECASE)
STATE_DIR = ".convert"


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


@dataclass
class ConvertOptions:
    """Settings that change the stored files; a resumed run must use the same."""

    size: int = 1024
    aspect: Aspect = "pad"
    drop_qc: bool = False
    apply_voi: bool = True
    target: Target = "pneumothorax"  # what the masks of the folders layout outline
    ignore_value: int | None = 127  # mask value meaning "unknown" in the folders layout; None: no such value
    stratify: str | None = None  # source manifest column copied to ``stratum`` (folds keep its shares)
    jpeg_quality: int | None = None  # store each image as re-encoded at this JPEG quality (one chain for mixed sources)

    def validate(self) -> None:
        if not 32 <= self.size <= 8192:
            raise PtxsegError("--size", f"must be between 32 and 8192 pixels, got {self.size}")
        if self.aspect not in ASPECTS:
            raise PtxsegError("--aspect", f"must be one of {', '.join(ASPECTS)}, got {self.aspect!r}")
        if self.target not in ("pneumothorax", "lungs"):
            raise PtxsegError("--target", f"must be pneumothorax or lungs, got {self.target!r}")
        if self.ignore_value is not None and not 0 < self.ignore_value < 256:
            raise PtxsegError("--ignore-value", f"must be a mask value in 1..255, got {self.ignore_value}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise PtxsegError("--jpeg-quality", f"must be between 1 and 100, got {self.jpeg_quality}")


@dataclass
class ConvertResult:
    """What a conversion did: the manifest rows and counts for the summary."""

    out: Path
    records: list[dict]
    converted: int = 0
    resumed: int = 0
    dropped: int = 0

    @property
    def tag_counts(self) -> Counter:
        return Counter(t for r in self.records for t in r["_tags"])


# ------------------------------------------------------------------ discovery


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


def _source_domains(src: Path) -> dict[str, str]:
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


def _meta_columns(meta: DicomMetadata) -> dict:
    """The manifest's metadata columns of one image (PixelSpacing split into row/column mm)."""
    row = {k: getattr(meta, k) for k in META_COLUMNS if hasattr(meta, k)}
    spacing = meta.PixelSpacing
    row["PixelSpacingRow"], row["PixelSpacingCol"] = spacing if spacing else (None, None)
    return row


def _read_mask_and_ignore(path: str, ignore_value: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A source mask as uint8 0/1 and its "unknown" pixels (bool, None when there are none): pixels equal to
    ``ignore_value`` are unknown, the rest is foreground where at least half the remaining maximum."""
    if ignore_value is None:
        return read_mask(path), None
    raw = read_image(path, radiograph=False)  # [0, 1]: back to 8-bit steps to compare with the value
    ignore = np.rint(raw * 255.0) == ignore_value
    rest = np.where(ignore, 0, raw)
    peak = float(rest.max())
    mask = (rest >= peak / 2).astype(np.uint8) if peak > 0 else np.zeros(raw.shape, np.uint8)
    return mask, (ignore if ignore.any() else None)


def _load_mask(item: Item, shape: tuple[int, int], ignore_value: int | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The item's full-resolution 0/1 mask (None when it has no annotation) and its unknown pixels (or None)."""
    if item.runs is not None:
        if item.rle_shape != shape:
            item.tags.append("mask_shape_mismatch")
            return None, None
        return runs_to_mask(item.runs[0], item.runs[1], shape), None
    if item.mask_path is not None:
        try:
            mask, ignore = _read_mask_and_ignore(item.mask_path, ignore_value)
        except PtxsegError as exc:
            raise PtxsegError(item.mask_path, exc.reason, code="corrupt") from None
        if mask.shape != shape:
            item.tags.append("mask_shape_mismatch")
            return None, None
        if item.label is not None and int(mask.any()) != item.label:
            item.tags.append("label_mask_disagree")
        return mask, ignore
    return None, None


def _write_lungs(out: Path, item_id: str, mask: np.ndarray, geom, size: int) -> int:
    """Store source-grid lung fields as ``lungs/<id>.png`` (right lung 1, left 2); returns the stored lung pixels."""
    sides = side_labels(mask)
    right, left = (resize_mask((sides == k).astype(np.uint8), geom, size) for k in (1, 2))
    stored = np.where(right > 0, 1, np.where(left > 0, 2, 0)).astype(np.uint8)
    write_png(under(out / "lungs", f"{item_id}.png"), stored)
    return int((stored > 0).sum())


def _write_annotation(out: Path, item_id: str, mask: np.ndarray, geom, opts: ConvertOptions) -> int:
    """Store a source-grid mask as the target's canonical file; returns its stored foreground pixels."""
    if opts.target == "lungs":
        return _write_lungs(out, item_id, mask, geom, opts.size)
    stored = resize_mask(mask, geom, opts.size)
    write_png(under(out / "masks", f"{item_id}.png"), stored * np.uint8(255))
    return int(stored.sum())


def convert_item(item: Item, out: Path, opts: ConvertOptions) -> dict:
    """Convert one item: write its PNGs and its state record; return its manifest row.

    Never raises for bad input: a refused file becomes a row with a refusal tag
    and ``qc_reason``.
    """
    row: dict = {**item.extra, "id": item.id, "source": item.source, "split": item.split, "positive": item.label}
    row.update(mask_area=None, qc_reason="", has_image=0)
    tags = item.tags
    if "unsafe_id" in tags:
        row.update(qc=join_tags(tags), _tags=list(dict.fromkeys(tags)), qc_reason=item.unsafe_reason)
        return row
    if item.image_path is not None:
        try:
            image, meta = read_radiograph(item.image_path, apply_voi=opts.apply_voi)
            tags.extend(image_warnings(meta.warnings, image.shape))
            row.update(_meta_columns(meta))
            # the source manifest's own values (patient, view, ...) win over what a raster file cannot say
            row.update({k: v for k, v in item.extra.items() if v not in ("", None)})
            mask, ignore = _load_mask(item, image.shape, item.ignore_value)
            if mask is None and item.split == "train" and "mask_shape_mismatch" not in tags:
                tags.append("image_without_mask")
            keep = not (opts.drop_qc and tags)
            stored, geom = resize_image(image, opts.size, opts.aspect)
            if opts.jpeg_quality is not None:  # every source through the same last step: a compression cue is no cue
                stored = jpeg_roundtrip(stored, opts.jpeg_quality)
            row.update(asdict(geom))
            if keep:
                if mask is not None:
                    area = _write_annotation(out, item.id, mask, geom, opts)
                    if opts.target == "lungs":
                        row["lung_area"] = area  # no pneumothorax annotation: "positive" stays unknown
                    else:
                        row["positive"], row["mask_area"] = int(mask.any()), area
                if item.lung_mask_path is not None:
                    lungs = read_mask(item.lung_mask_path)
                    if lungs.shape == image.shape:
                        row["lung_area"] = _write_lungs(out, item.id, lungs > 0, geom, opts.size)
                    else:
                        tags.append("mask_shape_mismatch")
                if ignore is not None:
                    stored_ignore = resize_mask(ignore.astype(np.uint8), geom, opts.size)
                    write_png(under(out / "ignore", f"{item.id}.png"), stored_ignore * np.uint8(255))
                    row["ignore_area"] = int(stored_ignore.sum())
                write_png(under(out / "images", f"{item.id}.png"), to_uint16(stored))
                row["has_image"] = 1
        except PtxsegError as exc:
            tags.append(exc.code if exc.code in REFUSAL_TAGS else "corrupt")
            row["qc_reason"] = str(exc)
    row["qc"] = join_tags(tags)
    row["_tags"] = list(dict.fromkeys(tags))
    if item.image_path is not None and not (set(tags) & REFUSAL_TAGS):
        # Refused items are retried on the next run (the file may have been fixed);
        # annotation-only items cost nothing to redo.
        write_text_atomic(under(out / STATE_DIR / "items", f"{item.id}.json"), dumps(row, default=_json_default))
    return row


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _convert_star(args: tuple[Item, Path, ConvertOptions]) -> dict:
    return convert_item(*args)


# ------------------------------------------------------------------ driver


def _check_options(out: Path, opts: ConvertOptions) -> None:
    params_path = out / STATE_DIR / "params.json"
    wanted = asdict(opts)
    if params_path.is_file():
        done = {**asdict(ConvertOptions()), **read_json_object(params_path)}  # settings added later: their defaults
        if done != wanted:
            diff = ", ".join(f"{k}={done.get(k)!r}" for k in wanted if done.get(k) != wanted[k])
            raise PtxsegError(out, f"was converted with other settings ({diff}); use a new output folder")
    else:
        write_text_atomic(params_path, dumps(wanted))


def convert_dataset(
    src: str | PathLike[str],
    out: str | PathLike[str],
    *,
    layout: Layout = "auto",
    rle_csv: str | PathLike[str] | None = None,
    rle_format: str = "auto",
    rle_shape: tuple[int, int] = SIIM_SHAPE,
    options: ConvertOptions | None = None,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> ConvertResult:
    """Convert a Kaggle-, PNG- or folders-layout source into a canonical dataset folder at ``out``.

    Re-running on the same ``out`` skips items already converted (resume). The
    manifest is written last, atomically.

    Args:
        progress: wraps the stream of finished items (``progress(iterable, total)``),
            e.g. a progress bar; ``None`` for none.
    """
    src, out = Path(src), Path(out)
    opts = options or ConvertOptions()
    opts.validate()
    if not src.is_dir():
        raise PtxsegError(src, "source is not a folder")
    if layout == "auto":
        layout = detect_layout(src)
    if layout == "kaggle":
        items = kaggle_items(src, Path(rle_csv) if rle_csv else None, rle_format, rle_shape)
    elif layout == "png":
        items = png_items(src)
    if layout in ("kaggle", "png"):
        domains = _source_domains(src)
        for item in items:
            if item.id in domains:
                item.extra["domain"] = domains[item.id]
    if layout == "folders":
        items = folder_items(src, opts.stratify)
        for item in items:
            item.ignore_value = opts.ignore_value
    elif layout not in ("kaggle", "png"):
        raise PtxsegError("--layout", f"must be auto, kaggle, png or folders, got {layout!r}")
    if not items:
        raise PtxsegError(src, f"no items found in the {layout} layout")
    if layout != "folders" and (opts.target != "pneumothorax" or opts.stratify):
        option = "--target" if opts.target != "pneumothorax" else "--stratify"
        raise PtxsegError(option, f"applies to the folders layout only, not {layout}")
    prepare_output_dir(out)
    _check_options(out, opts)

    result = ConvertResult(out=out, records=[])
    state = out / STATE_DIR / "items"
    todo, done_rows = [], {}
    for item in items:
        saved = under(state, f"{item.id}.json")
        try:
            done_rows[item.id] = read_json_object(saved) if saved.is_file() else None
        except PtxsegError:  # a damaged state record: convert the item again
            done_rows[item.id] = None
        if done_rows[item.id] is None:
            del done_rows[item.id]
            todo.append(item)
    result.resumed = len(done_rows)

    new_rows = process_map(_convert_star, [(item, out, opts) for item in todo], workers, progress)
    result.converted = len(new_rows)

    by_id = {**done_rows, **{r["id"]: r for r in new_rows}}
    rows = [by_id[item.id] for item in items]
    result.records = rows
    kept = [r for r in rows if not (opts.drop_qc and r["_tags"])]
    result.dropped = len(rows) - len(kept)
    write_dataset_info(out, StoredGeometry(opts.size, opts.aspect, opts.apply_voi))
    write_manifest(out / "manifest.csv", [{k: v for k, v in r.items() if k != "_tags"} for r in kept])
    os.makedirs(out / "images", exist_ok=True)
    os.makedirs(out / "masks", exist_ok=True)
    return result
