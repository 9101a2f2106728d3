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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from ptxseg.data.geometry import ASPECTS, Aspect, resize_image, resize_mask
from ptxseg.data.manifest import META_COLUMNS, StoredGeometry, write_dataset_info, write_manifest
from ptxseg.data.qc import REFUSAL_TAGS, image_warnings, join_tags
from ptxseg.data.sources import Item, detect_layout, folder_items, kaggle_items, png_items, source_domains
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir, write_text_atomic
from ptxseg.io.dicom import DicomMetadata
from ptxseg.io.images import jpeg_roundtrip, read_image, read_mask, read_radiograph, to_uint16, write_png
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import under
from ptxseg.io.rle import SIIM_SHAPE, runs_to_mask
from ptxseg.measure.lung_sides import side_labels
from ptxseg.parallel import process_map

Layout = Literal["auto", "kaggle", "png", "folders"]
Target = Literal["pneumothorax", "lungs"]
STATE_DIR = ".convert"


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
        domains = source_domains(src)
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
