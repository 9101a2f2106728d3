"""The operating-point grid search on probability maps (pure numpy; ``ptxseg tune`` and the training engine use it).

The grid of the issue: thresholds 0.20–0.80, minimum component sizes
{0, 50, 100, 200, 500}, minimum mask sizes {0, 500, 1000, 2000, 3000, 5000}
triplets (top threshold T ∈ {0.60 … 0.80}, top pixel count
A ∈ {600 … 3000}, bottom threshold B ∈ {0.3, 0.4}) and, for models with a
classifier head, a gate c ∈ {0.05, 0.10 … 0.95, 0.98, 0.99} on the head's probability combined
with every threshold × component × minimum-mask point; pixel counts refer to
a 1024² image and scale with the maps' area.

Scores come from :mod:`ptxseg.measure.metrics` (Dice from pixel counts, case statistics), the same definitions
`ptxseg evaluate` reports.

Speed: each image is visited once. For every threshold its probability map
is thresholded and labelled once (OpenCV, 8-connectivity); component areas
and their overlap with the truth (``bincount``) give, for every component
size at once, the kept area and intersection. Everything else — minimum mask
sizes, triplet rules, Dice and case counts — is vectorised over images from
those per-image numbers, so maps need not stay in memory.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from ptxseg.errors import PtxsegError
from ptxseg.measure.metrics import detection_metrics, dice_from_counts
from ptxseg.measure.operating_point import OperatingPoint

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.20, 0.801, 0.05), 2))
COMPONENT_PX = (0, 50, 100, 200, 500)
MIN_MASK_PX = (0, 500, 1000, 2000, 3000, 5000)
TOP_THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)
TOP_MIN_PX = (600, 1000, 1500, 2000, 2500, 3000)
BOTTOM_THRESHOLDS = (0.3, 0.4)
#: classifier-head gates c (searched when the maps come with the head's probability)
CLS_THRESHOLDS = (*(float(c) for c in np.round(np.arange(0.05, 0.951, 0.05), 2)), 0.98, 0.99)  # strict gates for rare positives


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
    cls_prob: np.ndarray | None = None  # N classifier-head probabilities, when the model has a head

    def dice(self, area: np.ndarray, inter: np.ndarray) -> np.ndarray:
        """Per-image Dice of masks keeping ``area`` pixels, ``inter`` of them true (the challenge convention)."""
        return dice_from_counts(inter, area, self.true_area)


def map_statistics(
    item: tuple,
    thresholds: tuple[float, ...] = THRESHOLDS,
    component_px: tuple[int, ...] = COMPONENT_PX,
    top_thresholds: tuple[float, ...] = TOP_THRESHOLDS,
    at_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray, list[int], int, float | None, tuple[int, int]]:
    """One map's grid numbers from ``item = (prob, truth[, cls_prob])``.

    Returns kept area and its intersection with the truth (T × C pixels, component
    sizes given for an ``at_size``² image), pixels above each top threshold, the
    true area, the classifier probability (or None) and the map's shape.
    """
    prob, truth = item[0], item[1]
    t = np.asarray(truth) != 0
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
    top = [int(np.count_nonzero(prob > tt)) for tt in top_thresholds]
    return area, inter, top, int(t.sum()), (float(item[2]) if len(item) > 2 else None), tuple(prob.shape)


def _one_thread() -> None:
    cv2.setNumThreads(1)  # the processes already share the cores


def _windows(items: Iterable, size: int):
    it = iter(items)
    while window := list(itertools.islice(it, size)):
        yield window


def collect(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    n: int | None = None,
    thresholds: tuple[float, ...] = THRESHOLDS,
    component_px: tuple[int, ...] = COMPONENT_PX,
    top_thresholds: tuple[float, ...] = TOP_THRESHOLDS,
    at_size: int = 1024,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    workers: int = 1,
) -> GridStats:
    """Per-image grid numbers from ``(probability H×W, truth H×W)`` pairs (all of one size), or
    ``(probability, truth, cls_prob)`` triples when a classifier head's probability is known (all or none).

    With ``workers > 1`` the maps are labelled in that many processes, a
    bounded window of maps at a time (memory does not grow with the number of maps).
    """
    stat = functools.partial(
        map_statistics,
        thresholds=tuple(thresholds),
        component_px=tuple(component_px),
        top_thresholds=tuple(top_thresholds),
        at_size=at_size,
    )
    stream = progress(pairs, n) if (progress and n) else pairs
    if workers > 1:
        pool = mp.get_context("spawn").Pool(workers, initializer=_one_thread)
        rows = (r for window in _windows(stream, 4 * workers) for r in pool.map(stat, window))
    else:
        pool, rows = None, map(stat, stream)
    try:
        return stats_from_rows(list(rows), thresholds, component_px, top_thresholds, at_size)
    finally:
        if pool is not None:
            pool.terminate()


def stats_from_rows(
    rows: list[tuple],
    thresholds: tuple[float, ...] = THRESHOLDS,
    component_px: tuple[int, ...] = COMPONENT_PX,
    top_thresholds: tuple[float, ...] = TOP_THRESHOLDS,
    at_size: int = 1024,
) -> GridStats:
    """:class:`GridStats` from :func:`map_statistics` rows (one per map, all maps of one size, computed with the
    same grid) — so maps can be reduced to their rows where they are made (a training epoch's validation pass)
    and scored together later."""
    rows_area, rows_inter, rows_top, t_areas, heads, shapes = [], [], [], [], [], set()
    for area, inter, top, t_area, head, shape in rows:
        rows_area.append(area)
        rows_inter.append(inter)
        rows_top.append(top)
        t_areas.append(t_area)
        heads.append(head)
        shapes.add(tuple(shape))
    if not shapes:
        raise ValueError("no probability maps to tune on")
    if len(shapes) > 1:
        raise ValueError(f"probability maps of different sizes: {sorted(shapes)[:3]}")
    h, w = shapes.pop()
    scale = h * w / float(at_size * at_size)
    known = [h is not None for h in heads]
    if any(known) and not all(known):
        raise ValueError("classifier probabilities are given for some maps only")
    return GridStats(
        tuple(thresholds),
        tuple(component_px),
        tuple(top_thresholds),
        at_size,
        np.stack(rows_area, -1),
        np.stack(rows_inter, -1),
        np.asarray(rows_top, dtype=np.int64).reshape(len(rows_area), len(top_thresholds)).T,
        np.asarray(t_areas),
        scale,
        np.asarray(heads, dtype=np.float64) if all(known) else None,
    )


def _case(stats: GridStats, final_area: np.ndarray) -> tuple[float, float]:
    """Case sensitivity and specificity when an image counts as positive for a non-empty final mask."""
    m = detection_metrics(final_area > 0, stats.true_area > 0)
    return m["case_sensitivity"], m["case_specificity"]


def image_weights(positive: np.ndarray, prevalence: float | None) -> np.ndarray:
    """Per-image weights (summing to 1) of the tuning score: equal, or positives sharing ``prevalence``.

    Raises:
        PtxsegError: a prevalence outside (0, 1), or one asked of maps without both positives and negatives.
    """
    positive = np.asarray(positive, bool)
    n = len(positive)
    if prevalence is None:
        return np.full(n, 1.0 / max(n, 1))
    if not 0 < prevalence < 1:
        raise PtxsegError("--prevalence", f"must be between 0 and 1 (exclusive), got {prevalence}")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise PtxsegError("--prevalence", f"needs positive and negative images; the maps hold {n_pos} and {n_neg}")
    return np.where(positive, prevalence / n_pos, (1 - prevalence) / n_neg)


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
    gates: list[dict] = field(default_factory=list)  # best point per classifier gate c (empty without a head)


def _sweep(stats: GridStats, avg: Callable[[np.ndarray], float]) -> list[dict]:
    """Mean Dice and case sensitivity/specificity at each threshold alone (no size rule)."""
    rows = []
    for i, thr in enumerate(stats.thresholds):
        a, it = stats.kept_area[i, 0], stats.kept_inter[i, 0]
        sens, spec = _case(stats, a)
        rows.append({"threshold": thr, "dice": avg(stats.dice(a, it)), "case_sensitivity": sens, "case_specificity": spec})
    return rows


@dataclass
class _SizeGrid:
    """The threshold × minimum-mask grid (best component size per cell), its best point, and per classifier gate
    the best (Dice, grid index, kept areas)."""

    grid: np.ndarray
    grid_c: np.ndarray
    best: tuple[float, OperatingPoint | None]
    best_gate: list[tuple[float, tuple, np.ndarray]]


def _size_grid(stats: GridStats, min_mask_px: tuple[int, ...], gates: tuple, avg: Callable[[np.ndarray], float]) -> _SizeGrid:
    T, C = len(stats.thresholds), len(stats.component_px)
    empty_dice = (stats.true_area == 0).astype(np.float64)  # Dice of an emptied mask
    shut = [stats.cls_prob < c for c in gates]  # N-vectors: images the gate empties
    out = _SizeGrid(np.zeros((T, len(min_mask_px))), np.zeros((T, len(min_mask_px)), int), (-1.0, None), [])
    out.best_gate = [(-1.0, (), empty_dice) for _ in gates]
    for i in range(T):
        for k, mm in enumerate(min_mask_px):
            scores = []
            for j in range(C):
                a = stats.kept_area[i, j]
                empty = a < mm * stats.scale
                fa = np.where(empty, 0, a)
                dice = stats.dice(fa, np.where(empty, 0, stats.kept_inter[i, j]))
                scores.append(avg(dice))
                for g, gated in enumerate(shut):
                    d = avg(np.where(gated, empty_dice, dice))
                    if d > out.best_gate[g][0]:
                        out.best_gate[g] = (d, (i, j, k), np.where(gated, 0, fa))
            j = int(np.argmax(scores))
            out.grid[i, k], out.grid_c[i, k] = scores[j], stats.component_px[j]
            if scores[j] > out.best[0]:
                point = OperatingPoint(
                    threshold=stats.thresholds[i], min_component_px=stats.component_px[j], min_mask_px=mm, at_size=stats.at_size
                )
                out.best = (scores[j], point)
    return out


def _gate_rows(stats: GridStats, gates: tuple, best_gate: list, min_mask_px: tuple[int, ...]) -> list[dict]:
    """One row per classifier gate: its best threshold and sizes, Dice and case rates."""
    rows = []
    for c, (d, (i, j, k), fa) in zip(gates, best_gate, strict=True):
        sens, spec = _case(stats, fa)
        rows.append(
            {
                "cls_threshold": c,
                "threshold": stats.thresholds[i],
                "component_px": stats.component_px[j],
                "min_mask_px": min_mask_px[k],
                "dice": d,
                "case_sensitivity": sens,
                "case_specificity": spec,
            }
        )
    return rows


def _triplets(
    stats: GridStats, top_min_px: tuple[int, ...], bottom_thresholds: tuple[float, ...], avg: Callable[[np.ndarray], float]
) -> list[dict]:
    """Every triplet rule (top threshold × its minimum pixels × bottom threshold × component size), best first."""
    rows = []
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
                    d = avg(stats.dice(fa, np.where(empty, 0, it)))
                    sens, spec = _case(stats, fa)
                    rows.append(
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
    rows.sort(key=lambda r: -r["dice"])
    return rows


def search(
    stats: GridStats,
    min_mask_px: tuple[int, ...] = MIN_MASK_PX,
    top_min_px: tuple[int, ...] = TOP_MIN_PX,
    bottom_thresholds: tuple[float, ...] = BOTTOM_THRESHOLDS,
    cls_thresholds: tuple[float, ...] = CLS_THRESHOLDS,
    prevalence: float | None = None,
) -> TuneResult:
    """Score every grid point; return the best operating point and the tables a paper reports.

    The score is the SIIM mean Dice over the images, or with ``prevalence`` p the mean Dice at that share of
    positives: ``p · (mean Dice of the positives) + (1 − p) · (mean Dice of the negatives)``, the second term
    being the case specificity (a negative scores 1 when left empty). A validation set whose positive share is
    not the population's (e.g. 97 % positive) is tuned for the population that way.

    Ties keep the first point met (lower threshold, smaller sizes, no gate), so
    a rule is only added when it strictly helps.
    """
    w = image_weights(stats.true_area > 0, prevalence)

    def avg(per_image: np.ndarray) -> float:
        return float(w @ per_image)

    gates = tuple(cls_thresholds) if stats.cls_prob is not None else ()
    sizes = _size_grid(stats, tuple(min_mask_px), gates, avg)
    gate_rows = _gate_rows(stats, gates, sizes.best_gate, tuple(min_mask_px))
    triplets = _triplets(stats, top_min_px, bottom_thresholds, avg)
    family = "threshold + sizes"
    best_dice, best_op = sizes.best
    if triplets and triplets[0]["dice"] > best_dice:
        r = triplets[0]
        best_dice, family = r["dice"], "triplet"
        best_op = OperatingPoint(
            threshold=r["bottom_threshold"],
            min_component_px=r["component_px"],
            at_size=stats.at_size,
            top_threshold=r["top_threshold"],
            top_min_px=r["top_min_px"],
        )
    top_gate = max(gate_rows, key=lambda r: r["dice"], default=None)
    if top_gate is not None and top_gate["dice"] > best_dice:
        r = top_gate
        best_dice, family = r["dice"], "classifier gate + threshold + sizes"
        best_op = OperatingPoint(
            threshold=r["threshold"],
            min_component_px=r["component_px"],
            min_mask_px=r["min_mask_px"],
            at_size=stats.at_size,
            cls_threshold=r["cls_threshold"],
        )
    sweep = _sweep(stats, avg)
    return TuneResult(best_op, best_dice, sweep, sizes.grid, sizes.grid_c, tuple(min_mask_px), triplets, family, gate_rows)
