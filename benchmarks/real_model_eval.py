"""Out-of-fold evaluation of K fold models on real SIIM films (docs/real-model.md).

Every number of the real model's card comes from here:

- each fold model predicts the films it did not train on (its validation fold, with its TTA), and the same
  fold's DICOM negatives re-encoded as lossy JPEGs (the format shortcut check);
- the operating point is tuned at the challenge's prevalence (0.22) by nested cross-tuning: fold k is scored with
  the point tuned on the other folds' maps, so no film chooses its own threshold;
- reported: Dice on positives, case sensitivity / specificity with bootstrap 95 % CIs, Dice by lesion-size
  tercile, the prevalence-weighted SIIM mean Dice against the all-empty 0.78, the classifier head's AUROC, the
  point with and without the classifier gate, the probability distributions per source (JPEG / PNG / DICOM),
  the DICOM-vs-JPEG answer of every negative, and the ensemble's call rate on held-out in-domain unlabelled
  films with the false-alarm rate it bounds;
- a grid of out-of-fold overlays: best, median, worst positives and false positives.

    python benchmarks/real_model_eval.py --data DATA --runs R0 R1 R2 --work WORK [--negjpeg DS] [--unlabelled DS]
        [--sample DS] [--out results.json] [--figure grid.png]

Maps are cached in WORK (re-running only re-scores). All inputs are canonical datasets (`ptxseg convert`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ptxseg.clinical.render import case_tile
from ptxseg.data.manifest import read_manifest
from ptxseg.data.split import fold_split
from ptxseg.data.truth import read_truth
from ptxseg.infer.predictor import Predictor, predict_dataset
from ptxseg.io.images import read_image
from ptxseg.io.probability_maps import load_probability_map
from ptxseg.measure.gridsearch import CLS_THRESHOLDS, collect, search
from ptxseg.measure.metrics import detection_metrics, dice_per_image, ranking_metrics
from ptxseg.measure.operating_point import apply_operating_point

PREVALENCE = 0.22
#: a wider grid than ptxseg tune's default: this model's maps are confident (median maximum 0.97 on negatives)
GRID = {
    "thresholds": tuple(float(t) for t in np.round(np.arange(0.20, 0.951, 0.05), 2)),
    "component_px": (0, 200, 500, 1000, 2000),
    "top_thresholds": (0.7, 0.8, 0.9, 0.95),
}
MIN_MASK_PX = (0, 1000, 2000, 3000, 5000, 8000, 12000, 20000)
GOAL = {"sensitivity": 0.60, "specificity": 0.95}


def cached_maps(predictor: Predictor, dataset: Path, ids: list[str], folder: Path) -> None:
    """Predict the ids of ``dataset`` whose map is not in ``folder`` yet."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [i for i in ids if not (folder / f"{i}.npz").is_file()]
    for _ in predict_dataset(predictor, dataset, todo, folder):
        pass


def load(folder: Path, dataset: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked maps (N×H×W float32), truths (N×H×W uint8) and head probabilities (N) of ``ids``."""
    probs, truths, heads = [], [], []
    for i in ids:
        prob, head = load_probability_map(folder / f"{i}.npz")
        probs.append(prob)
        truths.append(read_truth(dataset, i, "pneumothorax", prob.shape))
        heads.append(np.nan if head is None else head)
    return np.stack(probs), np.stack(truths).astype(np.uint8), np.asarray(heads, float)


def boot(fn, groups: list[np.ndarray], n: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile interval of ``fn(*resampled groups)``, each group resampled on its own (stratified)."""
    rng = np.random.default_rng(seed)
    vals = [fn(*(g[rng.integers(0, len(g), len(g))] for g in groups)) for _ in range(n)]
    vals = np.asarray(vals, float)
    vals = vals[np.isfinite(vals)]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def score(dice: np.ndarray, called: np.ndarray, positive: np.ndarray) -> dict:
    """Headline numbers of final masks: per-image Dice and "called positive" flags."""
    dp, neg_empty = dice[positive], ~called[~positive]
    out = detection_metrics(called, positive)
    out["dice_positive"] = float(dp.mean())
    out["prevalence_weighted_dice"] = PREVALENCE * float(dp.mean()) + (1 - PREVALENCE) * float(neg_empty.mean())
    out["ci95"] = {
        "dice_positive": boot(np.mean, [dp]),
        "case_sensitivity": boot(np.mean, [called[positive]]),
        "case_specificity": boot(np.mean, [neg_empty]),
        "prevalence_weighted_dice": boot(lambda a, b: PREVALENCE * a.mean() + (1 - PREVALENCE) * b.mean(), [dp, neg_empty]),
    }
    return out


def nested(tuning: dict, folds: np.ndarray, probs, truths, heads, gate: bool) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Final masks' Dice and calls when fold k is scored with the point tuned on ``tuning[k]`` (the other folds)."""
    dice, called, points = np.zeros(len(probs)), np.zeros(len(probs), bool), []
    for k in np.unique(folds):
        inside = folds == k
        result = search(tuning[k], min_mask_px=MIN_MASK_PX, prevalence=PREVALENCE, cls_thresholds=CLS_THRESHOLDS if gate else ())
        op = result.best
        points.append({"fold": int(k), **op.to_dict(), "family": result.family})
        idx = np.flatnonzero(inside)
        final = np.stack([apply_operating_point(probs[i], op, heads[i] if op.cls_threshold is not None else None) for i in idx])
        dice[idx] = dice_per_image(final, truths[idx])
        called[idx] = final.reshape(len(idx), -1).any(1)
    return dice, called, points


def overlay_grid(dataset: Path, ids, probs, truths, heads, op, dice, positive, path: Path) -> None:
    """Best, median and worst positives (ranked by nested out-of-fold Dice) and the negatives with the highest head
    probability, one row each, drawn at the shipped point ``op``."""
    order = np.argsort(-np.where(positive, dice, -1))
    pos = order[: positive.sum()]
    negs = np.flatnonzero(~positive)
    negs = negs[np.argsort(-heads[negs])]
    rows = {"best": pos[:4], "median": pos[len(pos) // 2 - 2 : len(pos) // 2 + 2], "worst": pos[-4:], "negatives": negs[:4]}
    tiles = []
    for name, idx in rows.items():
        row = []
        for i in idx:
            image = read_image(Path(dataset) / "images" / f"{ids[i]}.png")
            final = apply_operating_point(probs[i], op, heads[i] if op.cls_threshold is not None else None)
            shown = float(dice_per_image(final[None], truths[i][None])[0])  # of the mask drawn (the shipped point)
            label = f"{name} D={shown:.2f} c={heads[i]:.2f}"
            row.append(case_tile(image, final, truths[i], label))
        tiles.append(np.concatenate(row, axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, axis=0), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="fold k's run directory, in fold order")
    ap.add_argument("--work", type=Path, required=True, help="where the maps are cached")
    ap.add_argument("--negjpeg", type=Path, help="the DICOM negatives re-encoded as JPEG (same ImageIds)")
    ap.add_argument("--unlabelled", type=Path, help="held-out in-domain films without labels")
    ap.add_argument("--sample", type=Path, help="a second labelled check (the 8 real_sample films)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()

    manifest = read_manifest(args.data).set_index("id")
    fold_of, ids = {}, []
    for k, run in enumerate(args.runs):
        val = fold_split(args.data, k, create=False).val_ids
        predictor = Predictor([run])
        cached_maps(predictor, args.data, val, args.work / "oof")
        if args.negjpeg is not None:
            jpeg_ids = [i for i in val if (args.negjpeg / "images" / f"{i}.png").is_file()]
            cached_maps(predictor, args.negjpeg, jpeg_ids, args.work / "negjpeg")
        fold_of.update({i: k for i in val})
        ids += val
    probs, truths, heads = load(args.work / "oof", args.data, ids)
    folds = np.asarray([fold_of[i] for i in ids])
    positive = truths.reshape(len(ids), -1).any(1)
    rows = collect(zip(probs, truths, heads, strict=True), **GRID)
    tuning = {}  # fold → grid statistics of the other folds' maps (one fold only: itself, optimistic)
    for k in np.unique(folds):
        outside = folds != k if (folds != k).any() else folds == k
        tuning[k] = collect(zip(probs[outside], truths[outside], heads[outside], strict=True), **GRID)

    out: dict = {"images": len(ids), "positives": int(positive.sum()), "negatives": int((~positive).sum())}
    out["all_empty_baseline"] = 1 - PREVALENCE
    raw_max = probs.reshape(len(ids), -1).max(1)
    out["ranking"] = {
        "head": ranking_metrics(heads, positive) | {"ci95": boot(lambda p, n: _auc(p, n), [heads[positive], heads[~positive]])},
        "max_probability": ranking_metrics(raw_max, positive),
    }
    out["sensitivity_at_specificity_0.95"] = _sens_at_spec(heads, positive, 0.95)
    for gate in (True, False):
        dice, called, points = nested(tuning, folds, probs, truths, heads, gate)
        if gate:
            gated_dice = dice
        res = score(dice, called, positive) | {"points": points}
        areas = truths.reshape(len(ids), -1).sum(1)
        terciles = pd.qcut(areas[positive], 3, labels=["small", "medium", "large"])
        res["dice_by_size"] = {
            str(t): {
                "dice": float(dice[positive][terciles == t].mean()),
                "sensitivity": float(called[positive][terciles == t].mean()),
                "area_px_1024": [
                    int(areas[positive][terciles == t].min() / _scale(probs)),
                    int(areas[positive][terciles == t].max() / _scale(probs)),
                ],
            }
            for t in terciles.categories
        }
        out["with_gate" if gate else "without_gate"] = res
    final = search(rows, min_mask_px=MIN_MASK_PX, prevalence=PREVALENCE)
    out["shipped_point"] = final.best.to_dict() | {"family": final.family, "tuned_on": "all out-of-fold maps"}
    sources = manifest.loc[ids, "source"].astype(str).str.rsplit(".", n=1).str[-1].str.lower().to_numpy()
    out["max_probability_by_source"] = _by_source(raw_max, sources, positive)
    out["head_by_source"] = _by_source(heads, sources, positive)
    if args.negjpeg is not None:
        out["dicom_vs_jpeg"] = _shortcut(args, ids, heads, probs, positive, final.best)
    if args.unlabelled is not None or args.sample is not None:
        ensemble = Predictor(list(args.runs))
        if args.unlabelled is not None:
            calls_figure = None if args.figure is None else args.figure.with_name("unlabelled_calls.jpg")
            out["unlabelled"] = _call_rate(ensemble, args.unlabelled, args.work / "unlabelled", final.best, out, calls_figure)
        if args.sample is not None:
            out["real_sample"] = _sample(ensemble, args.sample, args.work / "sample", final.best)
    if args.figure is not None:
        overlay_grid(args.data, ids, probs, truths, heads, final.best, gated_dice, positive, args.figure)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".md").write_text(markdown(out))


def _ci(r: dict, key: str) -> str:
    lo, hi = r["ci95"][key]
    return f"{r[key]:.3f} ({lo:.3f}–{hi:.3f})"


def markdown(out: dict) -> str:
    """The headline tables of ``out`` as Markdown (docs/real-model.md and the shipped MODEL_CARD.md)."""
    lines = [
        f"Out of fold: {out['images']} real SIIM films ({out['positives']} with pneumothorax, {out['negatives']} without), "
        "each predicted by the fold model that did not train on it; operating points tuned at prevalence "
        f"{PREVALENCE} on the other folds' maps (nested). 95 % bootstrap CIs.",
        "",
        "| operating point | Dice on positives | case sensitivity | case specificity | SIIM mean Dice at 22 % prevalence |",
        "|---|---|---|---|---|",
    ]
    for key, name in (("with_gate", "with the classifier gate"), ("without_gate", "without the gate")):
        r = out[key]
        lines.append(
            f"| {name} | {_ci(r, 'dice_positive')} | {_ci(r, 'case_sensitivity')} | {_ci(r, 'case_specificity')} "
            f"| {_ci(r, 'prevalence_weighted_dice')} |"
        )
    lines += ["", f"All-empty answer: {out['all_empty_baseline']:.3f}.", ""]
    head, mx = out["ranking"]["head"], out["ranking"]["max_probability"]
    lines += [
        f"Image-level ranking (positives vs the {out['negatives']} negatives): classifier head AUROC {head['auroc']:.3f} "
        f"({head['ci95'][0]:.3f}–{head['ci95'][1]:.3f}); maximum of the map AUROC {mx['auroc']:.3f}. Head sensitivity at "
        f"a measured specificity ≥ 0.95: {out['sensitivity_at_specificity_0.95']['sensitivity']:.3f}.",
        "",
        "| lesion size (tercile, px at 1024²) | Dice | sensitivity |",
        "|---|---|---|",
    ]
    for name, r in out["with_gate"]["dice_by_size"].items():
        lines.append(f"| {name} ({r['area_px_1024'][0]:,}–{r['area_px_1024'][1]:,}) | {r['dice']:.3f} | {r['sensitivity']:.3f} |")
    return "\n".join(lines) + "\n"


def _by_source(values: np.ndarray, sources: np.ndarray, positive: np.ndarray) -> dict:
    """Quantiles of ``values`` per file format and label ("positive jpg", "negative dcm", ...)."""
    groups = ((s, p) for s in np.unique(sources) for p in (True, False))
    return {
        f"{'positive' if p else 'negative'} {s}": _quantiles(values[(sources == s) & (positive == p)])
        for s, p in groups
        if ((sources == s) & (positive == p)).any()
    }


def _scale(probs: np.ndarray) -> float:
    return probs.shape[1] * probs.shape[2] / 1024**2


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _sens_at_spec(score: np.ndarray, positive: np.ndarray, spec: float) -> dict:
    """The head's sensitivity at the lowest threshold whose measured specificity is at least ``spec``."""
    neg = np.sort(score[~positive])
    cut = neg[min(len(neg) - 1, int(np.ceil(spec * len(neg))) - 1)]
    return {"threshold": float(cut), "sensitivity": float((score[positive] > cut).mean()), "negatives": int(len(neg))}


def _quantiles(values: np.ndarray) -> dict:
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"n": int(len(values)), **{f"p{p}": round(float(v), 4) for p, v in zip((5, 25, 50, 75, 95), q, strict=True)}}


def _shortcut(args, ids, heads, probs, positive, op) -> dict:
    """Each original DICOM film against its JPEG re-encode, both predicted by the fold model that did not train on
    it: the head, the map's maximum and the final call, for the negatives and the positives apart."""
    jpeg = {p.stem for p in (args.work / "negjpeg").glob("*.npz")}
    out = {}
    for label, want in (("negatives", False), ("positives", True)):
        rows = []
        for k, i in enumerate(ids):
            if i not in jpeg or positive[k] != want:
                continue
            prob_j, head_j = load_probability_map(args.work / "negjpeg" / f"{i}.npz")
            call_d = apply_operating_point(probs[k], op, heads[k] if op.cls_threshold is not None else None).any()
            call_j = apply_operating_point(prob_j, op, head_j if op.cls_threshold is not None else None).any()
            rows.append((heads[k], head_j, float(probs[k].max()), float(prob_j.max()), bool(call_d), bool(call_j)))
        if not rows:
            continue
        a = np.asarray([r[:4] for r in rows])
        out[label] = {
            "films": len(rows),
            "head_dicom_median": float(np.median(a[:, 0])),
            "head_jpeg_median": float(np.median(a[:, 1])),
            "head_abs_difference_median": float(np.median(np.abs(a[:, 0] - a[:, 1]))),
            "head_abs_difference_max": float(np.abs(a[:, 0] - a[:, 1]).max()),
            "max_prob_dicom_median": float(np.median(a[:, 2])),
            "max_prob_jpeg_median": float(np.median(a[:, 3])),
            "max_prob_abs_difference_max": float(np.abs(a[:, 2] - a[:, 3]).max()),
            "called_dicom": int(sum(r[4] for r in rows)),
            "called_jpeg": int(sum(r[5] for r in rows)),
            "same_call": int(sum(r[4] == r[5] for r in rows)),
        }
    return out


def _call_rate(predictor, dataset: Path, folder: Path, op, out: dict, figure: Path | None = None) -> dict:
    """Share of held-out unlabelled in-domain films called positive, and the false-alarm rate it implies."""
    ids = sorted(read_manifest(dataset).query("has_image == 1")["id"])
    cached_maps(predictor, dataset, ids, folder)
    calls, heads = [], []
    for i in ids:
        prob, head = load_probability_map(folder / f"{i}.npz")
        calls.append(apply_operating_point(prob, op, head if op.cls_threshold is not None else None).any())
        heads.append(head)
    rate = float(np.mean(calls))
    if figure is not None:
        tiles = []
        for i, called, head in zip(ids, calls, heads, strict=True):
            if called:
                prob, _ = load_probability_map(folder / f"{i}.npz")
                mask = apply_operating_point(prob, op, head if op.cls_threshold is not None else None)
                tiles.append(case_tile(read_image(dataset / "images" / f"{i}.png"), mask, np.zeros_like(mask), f"c={head:.2f}"))
        if tiles:
            tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
            rows = [np.concatenate(tiles[k : k + 4], axis=1) for k in range(0, len(tiles), 4)]
            cv2.imwrite(str(figure), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    sens = out["with_gate"]["case_sensitivity"]
    # call = sens·π + fpr·(1−π): the false-alarm rate for a prevalence π of 0 .. 0.22 (SIIM's share)
    fpr = {f"prevalence {p}": max(0.0, (rate - sens * p) / (1 - p)) for p in (0.0, 0.1, PREVALENCE)}
    return {
        "films": len(ids),
        "call_rate": rate,
        "call_rate_ci95": boot(np.mean, [np.asarray(calls, float)]),
        "implied_fpr": fpr,
        "head": _quantiles(np.asarray(heads, float)),
        "top_calls": [ids[k] for k in np.argsort(heads)[::-1][:8]],
    }


def _sample(predictor, dataset: Path, folder: Path, op) -> list[dict]:
    ids = sorted(read_manifest(dataset).query("has_image == 1")["id"])
    cached_maps(predictor, dataset, ids, folder)
    rows = []
    for i in ids:
        prob, head = load_probability_map(folder / f"{i}.npz")
        final = apply_operating_point(prob, op, head if op.cls_threshold is not None else None)
        truth = read_truth(dataset, i, "pneumothorax", prob.shape)
        rows.append(
            {
                "id": i[-12:],
                "positive": bool(truth.any()),
                "called": bool(final.any()),
                "head": round(float(head), 4),
                "dice": round(float(dice_per_image(final[None], truth[None])[0]), 4),
            }
        )
    return rows


if __name__ == "__main__":
    main()
