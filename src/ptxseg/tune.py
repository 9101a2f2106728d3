"""Grid search of operating points on validation probability maps (``ptxseg tune``).

The grid of the issue: thresholds 0.20–0.80, minimum component sizes
{0, 50, 100, 200, 500}, minimum mask sizes {0, 500, 1000, 2000, 3000, 5000}
and triplets (top threshold T ∈ {0.60 … 0.80}, top pixel count
A ∈ {600 … 3000}, bottom threshold B ∈ {0.3, 0.4}); pixel counts refer to a
1024² image and scale with the maps' area.

Speed: each image is visited once. For every threshold its probability map
is thresholded and labelled once (OpenCV, 8-connectivity); component areas
and their overlap with the truth (``bincount``) give, for every component
size at once, the kept area and intersection. Everything else — minimum mask
sizes, triplet rules, Dice and case counts — is vectorised over images from
those per-image numbers, so maps need not stay in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from ptxseg.postprocess import OperatingPoint

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.20, 0.801, 0.05), 2))
COMPONENT_PX = (0, 50, 100, 200, 500)
MIN_MASK_PX = (0, 500, 1000, 2000, 3000, 5000)
TOP_THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)
TOP_MIN_PX = (600, 1000, 1500, 2000, 2500, 3000)
BOTTOM_THRESHOLDS = (0.3, 0.4)


@dataclass
class GridStats:
    """Per-image numbers for every (threshold, component size): enough to score any grid point."""

    thresholds: tuple[float, ...]
    component_px: tuple[int, ...]
    top_thresholds: tuple[float, ...]
    at_size: int
    kept_area: np.ndarray  # T × C × N pixels kept
    kept_inter: np.ndarray  # T × C × N of them inside the truth
    top_count: np.ndarray  # TT × N pixels above each top threshold
    true_area: np.ndarray  # N
    scale: float  # map pixels per 1024²-pixel

    def dice(self, area: np.ndarray, inter: np.ndarray) -> np.ndarray:
        total = area + self.true_area
        return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


def collect(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    n: int | None = None,
    thresholds: tuple[float, ...] = THRESHOLDS,
    component_px: tuple[int, ...] = COMPONENT_PX,
    top_thresholds: tuple[float, ...] = TOP_THRESHOLDS,
    at_size: int = 1024,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> GridStats:
    """Per-image grid numbers from ``(probability H×W, truth H×W)`` pairs (all of one size)."""
    rows_area, rows_inter, rows_top, t_areas = [], [], [], []
    scale = None
    stream = progress(pairs, n) if (progress and n) else pairs
    for prob, truth in stream:
        t = np.asarray(truth) != 0
        if scale is None:
            scale = prob.shape[0] * prob.shape[1] / float(at_size * at_size)
        area = np.zeros((len(thresholds), len(component_px)), np.int64)
        inter = np.zeros_like(area)
        for i, thr in enumerate(thresholds):
            mask = (prob > thr).astype(np.uint8)
            if not mask.any():
                continue
            if component_px == (0,):  # nothing to remove: no labelling needed
                area[i, 0] = mask.sum()
                inter[i, 0] = np.count_nonzero(mask.astype(bool) & t)
                continue
            n_lab, labels = cv2.connectedComponents(mask, connectivity=8)
            comp_area = np.bincount(labels.ravel(), minlength=n_lab)[1:]
            comp_inter = np.bincount(labels[t], minlength=n_lab)[1:]
            for j, c in enumerate(component_px):
                keep = comp_area >= c * scale
                area[i, j] = comp_area[keep].sum()
                inter[i, j] = comp_inter[keep].sum()
        rows_area.append(area)
        rows_inter.append(inter)
        rows_top.append([int(np.count_nonzero(prob > tt)) for tt in top_thresholds])
        t_areas.append(int(t.sum()))
    if scale is None:
        raise ValueError("no probability maps to tune on")
    return GridStats(
        tuple(thresholds),
        tuple(component_px),
        tuple(top_thresholds),
        at_size,
        np.stack(rows_area, -1),
        np.stack(rows_inter, -1),
        np.asarray(rows_top).T,
        np.asarray(t_areas),
        scale,
    )


def _case(stats: GridStats, final_area: np.ndarray) -> tuple[float, float]:
    pos = stats.true_area > 0
    pred = final_area > 0
    sens = float((pred & pos).sum() / pos.sum()) if pos.any() else float("nan")
    spec = float((~pred & ~pos).sum() / (~pos).sum()) if (~pos).any() else float("nan")
    return sens, spec


@dataclass
class TuneResult:
    best: OperatingPoint
    best_dice: float
    threshold_sweep: list[dict]  # threshold-only
    size_grid: np.ndarray  # thresholds × min mask sizes (component size at its best per cell)
    size_grid_components: np.ndarray
    min_mask_px: tuple[int, ...]
    triplets: list[dict]  # best first
    family: str


def search(
    stats: GridStats,
    min_mask_px: tuple[int, ...] = MIN_MASK_PX,
    top_min_px: tuple[int, ...] = TOP_MIN_PX,
    bottom_thresholds: tuple[float, ...] = BOTTOM_THRESHOLDS,
) -> TuneResult:
    """Score every grid point; return the best operating point and the tables a paper reports."""
    T, C = len(stats.thresholds), len(stats.component_px)
    sweep = []
    for i, thr in enumerate(stats.thresholds):
        a, it = stats.kept_area[i, 0], stats.kept_inter[i, 0]
        sens, spec = _case(stats, a)
        sweep.append({"threshold": thr, "dice": float(stats.dice(a, it).mean()), "case_sensitivity": sens, "case_specificity": spec})
    grid = np.zeros((T, len(min_mask_px)))
    grid_c = np.zeros((T, len(min_mask_px)), int)
    best: tuple[float, OperatingPoint | None] = (-1.0, None)
    for i in range(T):
        for k, mm in enumerate(min_mask_px):
            scores = []
            for j in range(C):
                a, it = stats.kept_area[i, j], stats.kept_inter[i, j]
                empty = a < mm * stats.scale
                scores.append(float(stats.dice(np.where(empty, 0, a), np.where(empty, 0, it)).mean()))
            j = int(np.argmax(scores))
            grid[i, k], grid_c[i, k] = scores[j], stats.component_px[j]
            if scores[j] > best[0]:
                best = (scores[j], OperatingPoint(stats.thresholds[i], stats.component_px[j], mm, stats.at_size))
    triplets = []
    for b in bottom_thresholds:
        if b not in stats.thresholds:
            continue
        i = stats.thresholds.index(b)
        for j, c in enumerate(stats.component_px):
            a, it = stats.kept_area[i, j], stats.kept_inter[i, j]
            for ti, tt in enumerate(stats.top_thresholds):
                for amin in top_min_px:
                    empty = stats.top_count[ti] < amin * stats.scale
                    fa = np.where(empty, 0, a)
                    d = float(stats.dice(fa, np.where(empty, 0, it)).mean())
                    sens, spec = _case(stats, fa)
                    triplets.append(
                        {
                            "top_threshold": tt,
                            "top_min_px": amin,
                            "bottom_threshold": b,
                            "component_px": c,
                            "dice": d,
                            "case_sensitivity": sens,
                            "case_specificity": spec,
                        }
                    )
    triplets.sort(key=lambda r: -r["dice"])
    family = "threshold + sizes"
    best_dice, best_op = best
    if triplets and triplets[0]["dice"] > best_dice:
        r = triplets[0]
        best_dice, family = r["dice"], "triplet"
        best_op = OperatingPoint(r["bottom_threshold"], r["component_px"], 0, stats.at_size, r["top_threshold"], r["top_min_px"])
    return TuneResult(best_op, best_dice, sweep, grid, grid_c, tuple(min_mask_px), triplets, family)


def tune_model(model, dataset=None, fold: int | None = None, tta=None, save_probs=None, write: bool = True, progress=None):
    """Tune a saved model on its validation fold and (with ``write``) store the result in its ``.json``.

    Returns ``(result, weights_path, fold, image_count, tta)``; writes ``threshold_curves.png`` beside the weights.
    """
    import json
    from pathlib import Path

    from ptxseg.checkpoint import read_meta, resolve_weights
    from ptxseg.errors import PtxsegError
    from ptxseg.infer import Predictor, predict_dataset
    from ptxseg.io.atomic import write_text_atomic
    from ptxseg.train.data import fold_split

    weights = resolve_weights(model)
    meta = read_meta(weights)
    trained = meta.get("training_data", {})
    dataset = dataset or (Path(trained["dataset"]) if trained.get("dataset") else None)
    if dataset is None:
        raise PtxsegError("--data", "the model does not record its dataset; pass --data")
    fold = trained.get("fold", 0) if fold is None else fold
    ids = fold_split(dataset, fold, create=False).val_ids
    predictor = Predictor([weights], tta=tta)
    if save_probs is not None:
        Path(save_probs).mkdir(parents=True, exist_ok=True)
    result = search(collect(predict_dataset(predictor, dataset, ids, save_probs), len(ids), progress=progress))
    plot_threshold_curves(result.threshold_sweep, weights.parent / "threshold_curves.png")
    if write:
        meta["operating_point"] = result.best.to_dict()
        meta.setdefault("metrics", {})["val_dice_tuned"] = result.best_dice
        meta["tuning"] = {
            "fold": fold,
            "images": len(ids),
            "tta": predictor.tta,
            "family": result.family,
            "threshold_sweep": result.threshold_sweep,
            "triplets_top5": result.triplets[:5],
        }
        write_text_atomic(weights.with_suffix(".json"), json.dumps(meta, indent=2))
    return result, weights, fold, len(ids), predictor.tta


def plot_threshold_curves(sweep: list[dict], path) -> None:
    """Dice, case sensitivity and specificity against the threshold (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptxseg.io.atomic import atomic_path

    x = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("dice", "SIIM mean Dice"), ("case_sensitivity", "case sensitivity"), ("case_specificity", "case specificity")):
        ax.plot(x, [r[key] for r in sweep], marker="o", ms=3, label=label)
    ax.set_xlabel("probability threshold (no size rule)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
