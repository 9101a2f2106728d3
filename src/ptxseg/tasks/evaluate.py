"""Scoring predictions against ground truth as the SIIM-ACR challenge did (``ptxseg evaluate``).

A *mask source* is an RLE CSV (either RLE format, detected per file; several
rows of one image merged by union; ``-1`` for empty) or a folder of mask
PNGs named ``<ImageId>.png``. Every image of the truth is scored; an image
missing from the predictions counts as an empty prediction, and predicted
images absent from the truth are reported and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from ptxseg.data.manifest import read_manifest
from ptxseg.data.split import fold_split
from ptxseg.data.truth import read_ignore
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import predict_dataset
from ptxseg.io.images import read_mask
from ptxseg.io.rle import read_rle_csv
from ptxseg.measure.metrics import ImageStats, evaluate

#: the metrics of an evaluation, in the order tables and reports show them, with their labels
ROWS = (
    ("mean_dice", "SIIM score (mean per-image Dice)"),
    ("dice_positive", "Dice on images with pneumothorax"),
    ("empty_correct", "negatives predicted empty"),
    ("mean_iou", "mean per-image IoU"),
    ("case_sensitivity", "case sensitivity"),
    ("case_specificity", "case specificity"),
    ("case_precision", "case precision"),
    ("case_f1", "case F1"),
    ("case_f2", "case F2"),
    ("case_accuracy", "case accuracy"),
    ("pixel_pos_sensitivity", "pixel sensitivity (positive images)"),
    ("pixel_pos_precision", "pixel precision (positive images)"),
    ("pixel_pos_f1", "pixel F1 (positive images)"),
    ("pixel_all_specificity", "pixel specificity (all images)"),
    ("auroc", "AUROC (image score)"),
    ("auprc", "AUPRC (image score)"),
)


class PngMasks(Mapping[str, np.ndarray]):
    """Mask PNGs of a folder by ImageId (file stem), read lazily, resized to ``shape`` if needed (nearest)."""

    def __init__(self, folder: str | PathLike[str], shape: tuple[int, int]) -> None:
        self.folder, self.shape = Path(folder), shape
        self.paths = {p.stem: p for p in sorted(self.folder.glob("*.png"))}
        if not self.paths:
            raise PtxsegError(folder, "no .png masks in this folder")

    def __getitem__(self, image_id: str) -> np.ndarray:

        mask = read_mask(self.paths[image_id])
        if mask.shape != self.shape:
            mask = cv2.resize(mask, self.shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        return mask

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def open_masks(source: str | PathLike[str], size: int = 1024) -> Mapping[str, np.ndarray]:
    """An RLE CSV or a folder of PNG masks as a mapping ImageId → ``size × size`` uint8 mask."""

    p = Path(source)
    if p.is_dir():
        return PngMasks(p, (size, size))
    if not p.is_file():
        raise PtxsegError(p, "no such file or folder")
    return read_rle_csv(p, shape=(size, size))


@dataclass
class Evaluation:
    """Scores of a prediction set: ``metrics`` (with ``ci95``), per-image Dice, the id bookkeeping."""

    metrics: dict
    ids: list[str]
    dice: np.ndarray
    missing_in_pred: list[str] = field(default_factory=list)
    extra_in_pred: list[str] = field(default_factory=list)


def evaluate_masks(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    min_case_px: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> Evaluation:
    """Score ``pred`` against ``truth`` image by image (streaming: one mask pair in memory at a time)."""
    ids = list(truth)
    if not ids:
        raise PtxsegError("truth", "no images in the ground truth")
    missing = [i for i in ids if i not in pred]
    extra = sorted(set(pred) - set(truth))
    parts = []
    stream = progress(ids, len(ids)) if progress else ids
    for image_id in stream:
        t = truth[image_id]
        p = pred[image_id] if image_id in pred else np.zeros_like(t)
        parts.append(ImageStats.of(p, t))
    stats = ImageStats.concat(parts)
    metrics = evaluate(stats, min_case_px=min_case_px, n_boot=n_boot, seed=seed)
    metrics["missing_in_pred"] = len(missing)
    metrics["extra_in_pred"] = len(extra)
    return Evaluation(metrics, ids, stats.dice(), missing, extra)


def dataset_ids(dataset: str | PathLike[str], fold: int | None = None, split: str | None = None) -> list[str]:
    """Images of a canonical dataset to evaluate: a fold of ``folds.csv`` or every image of a manifest split."""

    if (fold is None) == (split is None):
        raise PtxsegError("--fold/--split", "give exactly one of --fold K or --split NAME")
    if fold is not None:
        return fold_split(dataset, fold, create=False).val_ids
    manifest = read_manifest(dataset)
    rows = manifest[(manifest["split"] == split) & (manifest["has_image"] == 1)]
    if rows.empty:
        raise PtxsegError(dataset, f"no images in split {split!r}")
    return list(rows["id"])


def evaluate_model(
    predictor,
    dataset: str | PathLike[str],
    ids: list[str],
    min_case_px: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    save_probs: str | PathLike[str] | None = None,
) -> Evaluation:
    """Predict ``ids`` with the model's TTA and stored operating point and score them
    (with ``save_probs``, also keep each probability map there as ``<id>.npz``); pixels the dataset marks
    unknown (``ignore/``) are left out.

    The image-level score for AUROC/AUPRC is the classifier head's probability
    when the model has one, else the maximum pixel probability.
    """

    op = predictor.operating_point
    parts = []
    if save_probs is not None:
        Path(save_probs).mkdir(parents=True, exist_ok=True)
    pairs = zip(ids, predict_dataset(predictor, dataset, ids, save_probs), strict=True)
    for image_id, (pred, truth) in progress(pairs, len(ids)) if progress else pairs:
        mask = pred.mask(op)
        ignore = read_ignore(dataset, image_id)
        if ignore is not None:  # an annotator's "unknown" pixels count for neither side
            mask, truth = np.where(ignore, 0, mask), np.where(ignore, 0, truth)
        parts.append(ImageStats.of(mask, truth, score=[float(pred.score)]))
    stats = ImageStats.concat(parts)
    metrics = evaluate(stats, min_case_px=min_case_px, n_boot=n_boot, seed=seed)
    metrics["operating_point"] = op.to_dict()
    metrics["tta"] = list(predictor.tta)
    return Evaluation(metrics, list(ids), stats.dice())
