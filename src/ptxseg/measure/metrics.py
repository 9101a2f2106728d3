"""Segmentation and detection metrics with the SIIM-ACR challenge conventions (pure numpy).

Per-image Dice: ``2|P∩T| / (|P| + |T|)``, with **both masks empty → 1** and
exactly one empty → 0 (IoU likewise). The challenge score is the mean
per-image Dice over all images, so correctly empty negatives (78 % of SIIM)
weigh as much as well-segmented positives; :func:`evaluate` therefore also
reports the Dice on positive images and the share of correctly empty
negatives, which together explain the score.

Everything derives from per-image pixel counts (:class:`ImageStats`), computed
once and vectorised over the batch; bootstrap confidence intervals resample
images and recompute from those counts, so they cost little.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def dice_from_counts(inter: np.ndarray, pred_area: np.ndarray, true_area: np.ndarray) -> np.ndarray:
    """Dice ``2·inter / (pred_area + true_area)`` from pixel counts (arrays of any broadcastable shape), with the
    challenge convention: both masks empty → 1. Returns float64 of the broadcast shape."""
    total = np.asarray(pred_area) + np.asarray(true_area)
    return np.where(total == 0, 1.0, 2.0 * np.asarray(inter) / np.maximum(total, 1))


def _as_batch(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    if p.ndim == 2:
        p, t = p[None], t[None]
    return p.reshape(len(p), -1), t.reshape(len(t), -1)


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each image of a batch.

    Args:
        pred, truth: ``N×H×W`` (or one ``H×W``) masks; non-zero is foreground.

    Returns:
        float64 array of ``N`` values in ``[0, 1]`` (empty/empty = 1).
    """
    return ImageStats.of(pred, truth).dice()


def iou_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU (Jaccard) of each image, same conventions as :func:`dice_per_image`."""
    return ImageStats.of(pred, truth).iou()


def siim_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """The SIIM-ACR challenge score: mean per-image Dice over the batch."""
    return float(dice_per_image(pred, truth).mean())


@dataclass
class ImageStats:
    """Per-image pixel counts (int64 arrays of length N) and optional image-level scores."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    score: np.ndarray | None = None  # image-level score (e.g. max probability), for AUROC/AUPRC

    @classmethod
    def of(cls, pred: np.ndarray, truth: np.ndarray, score: np.ndarray | None = None) -> ImageStats:
        """Counts of a batch of masks (``N×H×W`` or ``H×W``)."""
        p, t = _as_batch(pred, truth)
        tp = np.count_nonzero(p & t, axis=1)
        pa, ta = np.count_nonzero(p, axis=1), np.count_nonzero(t, axis=1)
        fp, fn = pa - tp, ta - tp
        tn = p.shape[1] - tp - fp - fn
        return cls(tp, fp, fn, tn, None if score is None else np.asarray(score, dtype=np.float64).reshape(-1))

    @classmethod
    def concat(cls, parts: list[ImageStats]) -> ImageStats:
        scores = [p.score for p in parts]
        score = None if any(s is None for s in scores) else np.concatenate(scores)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("tp", "fp", "fn", "tn")), score=score)

    def take(self, idx: np.ndarray) -> ImageStats:
        return ImageStats(self.tp[idx], self.fp[idx], self.fn[idx], self.tn[idx], None if self.score is None else self.score[idx])

    def __len__(self) -> int:
        return len(self.tp)

    @property
    def pred_area(self) -> np.ndarray:
        return self.tp + self.fp

    @property
    def true_area(self) -> np.ndarray:
        return self.tp + self.fn

    def dice(self) -> np.ndarray:
        return dice_from_counts(self.tp, self.pred_area, self.true_area)

    def iou(self) -> np.ndarray:
        union = self.tp + self.fp + self.fn
        return np.where(union == 0, 1.0, self.tp / np.maximum(union, 1))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def pixel_metrics(stats: ImageStats, prefix: str = "pixel") -> dict[str, float]:
    """Pixel sensitivity, specificity, precision and F1 aggregated over the images of ``stats``."""
    tp, fp, fn, tn = (float(getattr(stats, f).sum()) for f in ("tp", "fp", "fn", "tn"))
    return {
        f"{prefix}_sensitivity": _ratio(tp, tp + fn),
        f"{prefix}_specificity": _ratio(tn, tn + fp),
        f"{prefix}_precision": _ratio(tp, tp + fp),
        f"{prefix}_f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def detection_metrics(pred_positive: np.ndarray, true_positive: np.ndarray) -> dict[str, float]:
    """Case-level detection: confusion counts, sensitivity, specificity, precision, F1, F2, accuracy."""
    p, t = np.asarray(pred_positive, bool), np.asarray(true_positive, bool)
    tp, fp = int((p & t).sum()), int((p & ~t).sum())
    fn, tn = int((~p & t).sum()), int((~p & ~t).sum())
    prec, sens = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "case_tp": tp,
        "case_fp": fp,
        "case_fn": fn,
        "case_tn": tn,
        "case_sensitivity": sens,
        "case_specificity": _ratio(tn, tn + fp),
        "case_precision": prec,
        "case_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "case_f2": _ratio(5 * tp, 5 * tp + 4 * fn + fp),
        "case_accuracy": _ratio(tp + tn, len(p)),
    }


def ranking_metrics(score: np.ndarray, true_positive: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC (average precision) of an image-level score; NaN when one class is absent."""
    t = np.asarray(true_positive, bool)
    if t.all() or not t.any():
        return {"auroc": float("nan"), "auprc": float("nan")}
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"auroc": float(roc_auc_score(t, score)), "auprc": float(average_precision_score(t, score))}


def summarize(stats: ImageStats, min_case_px: int = 1) -> dict[str, float]:
    """Every headline number of a set of images.

    Args:
        min_case_px: an image counts as detected positive when its predicted
            mask has at least this many pixels (1: any non-empty mask).
    """
    dice, iou = stats.dice(), stats.iou()
    pos = stats.true_area > 0
    out: dict[str, float] = {
        "images": len(stats),
        "positives": int(pos.sum()),
        "mean_dice": float(dice.mean()),
        "mean_iou": float(iou.mean()),
        "dice_positive": float(dice[pos].mean()) if pos.any() else float("nan"),
        "empty_correct": float((stats.pred_area[~pos] == 0).mean()) if (~pos).any() else float("nan"),
    }
    out |= pixel_metrics(stats.take(np.flatnonzero(pos)), "pixel_pos")
    out |= pixel_metrics(stats, "pixel_all")
    out |= detection_metrics(stats.pred_area >= max(1, min_case_px), pos)
    if stats.score is not None:
        out |= ranking_metrics(stats.score, pos)
    return out


HEADLINE = ("mean_dice", "dice_positive", "empty_correct", "case_sensitivity", "case_specificity", "auroc")


def bootstrap_ci(
    stats: ImageStats,
    fn: Callable[[ImageStats], dict[str, float]] = summarize,
    keys: tuple[str, ...] = HEADLINE,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (resampling images with replacement, seeded) of ``fn(stats)[key]``."""
    rng = np.random.default_rng(seed)
    n = len(stats)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        res = fn(stats.take(rng.integers(0, n, n)))
        for k in keys:
            if k in res:
                samples[k].append(res[k])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, v in samples.items():
        arr = np.asarray(v, dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            out[k] = (float(np.percentile(arr, lo)), float(np.percentile(arr, hi)))
    return out


def evaluate(stats: ImageStats, min_case_px: int = 1, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`summarize` plus ``ci95`` bootstrap intervals of the headline numbers."""
    result: dict = summarize(stats, min_case_px)
    if n_boot > 0 and len(stats) > 1:
        result["ci95"] = {
            k: list(v) for k, v in bootstrap_ci(stats, lambda s: summarize(s, min_case_px), n_boot=n_boot, seed=seed).items()
        }
    return result
