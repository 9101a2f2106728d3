"""``ptxseg tune``: choose a model's (or an ensemble's) operating point on its validation maps and store it.

The search itself is :mod:`ptxseg.measure.gridsearch` (one pass per map); this module predicts or reads the maps,
runs it, writes the chosen point into the model card (or an ensemble file) and draws the threshold curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ptxseg.artifacts.card import write_card
from ptxseg.artifacts.checkpoint import read_model_card, resolve_weights
from ptxseg.artifacts.ensemble import Ensemble, write_ensemble
from ptxseg.clinical.render import threshold_curves
from ptxseg.data.manifest import read_manifest
from ptxseg.data.split import fold_split
from ptxseg.data.truth import read_ignore, read_truth
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor, predict_dataset
from ptxseg.io.names import check_name, under
from ptxseg.io.probability_maps import load_probability_map
from ptxseg.measure.gridsearch import TuneResult, collect, search


@dataclass
class TuneOutcome:
    """What :func:`tune_model` did: the search result, where it wrote, on what."""

    result: TuneResult
    written: Path | None  # the model .json or ensemble file holding the new operating point (None: dry run)
    curves: Path  # threshold-curve PNG
    fold: int | None
    images: int
    tta: list[str]
    source: str  # "predicted" or the folder of stored maps


def _stored_pairs(probs: Path, dataset: Path, ids: list[str], target: str):
    """``(prob, truth[, cls])`` from ``probs/<id>.npz`` maps (resized to the stored mask's size when they differ)."""

    for image_id in ids:
        prob, cls = load_probability_map(under(probs, f"{check_name(image_id, dataset)}.npz"))
        truth = read_truth(dataset, image_id, target, prob.shape)
        if truth.shape != prob.shape:
            prob = cv2.resize(prob, truth.shape[::-1], interpolation=cv2.INTER_LINEAR)
        prob, truth = _known(dataset, image_id, prob, truth)
        yield (prob, truth) if cls is None else (prob, truth, cls)


def _known(dataset: Path, image_id: str, prob: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability and truth with the dataset's unknown pixels (``ignore/``) zeroed in both: they count for neither."""

    ignore = read_ignore(dataset, image_id)
    if ignore is None:
        return prob, truth
    return np.where(ignore, 0, prob).astype(prob.dtype), np.where(ignore, 0, truth).astype(truth.dtype)


@dataclass
class TuneRequest:
    """What ``ptxseg tune`` is asked to do.

    Attributes:
        models: run directories / weights files / an ensemble file (several models: an ensemble).
        dataset: canonical dataset (default: the one the first model was trained on).
        fold: validation fold to predict (default: the first model's). With ``probs`` and no fold, every stored map
            whose id is in the dataset is used (e.g. out-of-fold maps of K fold models).
        tta, weights: TTA list and ensemble weights (default: the stored ones).
        save_probs: keep the predicted maps there (``<id>.npz``).
        probs: tune on maps stored there instead of predicting.
        out: ensemble file to write (required to write the point of several models).
        write: store the chosen point (False: a dry run).
        workers: processes labelling the maps (see :func:`ptxseg.measure.gridsearch.collect`).
        prevalence: score the points at this share of positives (:func:`ptxseg.measure.gridsearch.search`); None: the
            validation images as they are.
    """

    models: list[Path]
    dataset: Path | None = None
    fold: int | None = None
    tta: list[str] | None = None
    weights: list[float] | None = None
    save_probs: Path | None = None
    probs: Path | None = None
    out: Path | None = None
    write: bool = True
    workers: int = 1
    prevalence: float | None = None


def tune_model(request: TuneRequest | str | Path, progress=None) -> TuneOutcome:
    """Tune the operating point of a model, an ensemble file or several models, and (with ``write``) store it.

    ``request`` may be a single model path (every other setting at its default). The point goes into the single
    model's ``.json``, into the ensemble file given, or into ``out``; ``threshold_curves.png`` is written beside it.
    ``progress`` wraps the stream of maps (a progress bar).
    """
    if not isinstance(request, TuneRequest):
        request = TuneRequest([Path(request)])
    models, dataset, fold, tta, weights = list(request.models), request.dataset, request.fold, request.tta, request.weights
    save_probs, probs, out, write, workers = request.save_probs, request.probs, request.out, request.write, request.workers
    predictor = Predictor(models, weights=weights, tta=tta)
    if predictor.bundle is not None:
        raise PtxsegError(models[0], "is a bundle: tune its run directory (or ensemble file), then export it again")
    several = predictor.ensemble is not None or len(models) > 1 or out is not None  # → an ensemble file
    if write and len(models) > 1 and out is None:
        raise PtxsegError("--out", "several models: give --out ENSEMBLE.json to store their operating point (or --dry-run)")
    trained = predictor.card.training_data
    dataset = Path(dataset) if dataset else (Path(trained.dataset) if trained is not None and trained.dataset else None)
    if dataset is None:
        raise PtxsegError("--data", "the model does not record its dataset; pass --data")
    if probs is not None:
        probs = Path(probs)
        if not probs.is_dir():
            raise PtxsegError(probs, "no such folder of probability maps")
        if fold is not None:
            ids = fold_split(dataset, fold, create=False).val_ids
        else:
            known = set(read_manifest(dataset)["id"])
            ids = sorted(p.stem for p in probs.glob("*.npz") if p.stem in known)
        missing = [i for i in ids if not (probs / f"{i}.npz").is_file()]
        if not ids or missing:
            raise PtxsegError(probs, f"no stored map for {missing[0]!r}" if missing else f"no maps of images of {dataset}")
        items = _stored_pairs(probs, dataset, ids, predictor.target)
    else:
        fold = (trained.fold if trained is not None and trained.fold is not None else 0) if fold is None else fold
        ids = fold_split(dataset, fold, create=False).val_ids
        if save_probs is not None:
            Path(save_probs).mkdir(parents=True, exist_ok=True)
        items = (
            (*_known(dataset, i, p.prob, truth),) if p.cls_prob is None else (*_known(dataset, i, p.prob, truth), p.cls_prob)
            for i, (p, truth) in zip(ids, predict_dataset(predictor, dataset, ids, save_probs), strict=True)
        )
    result = search(collect(items, len(ids), progress=progress, workers=workers), prevalence=request.prevalence)
    if out is not None:
        target = Path(out)
    elif predictor.ensemble is not None:
        target = Path(models[0])
    else:
        target = resolve_weights(models[0]).with_suffix(".json")
    curves = target.parent / (f"{target.stem}_threshold_curves.png" if several else "threshold_curves.png")
    tuning = {
        "fold": fold,
        "images": len(ids),
        "tta": predictor.tta,
        "source": "predicted" if probs is None else str(probs),
        "family": result.family,
        "prevalence": request.prevalence,
        "threshold_sweep": result.threshold_sweep,
        "triplets_top5": result.triplets[:5],
        "classifier_gates": result.gates,
        "val_dice_tuned": result.best_dice,
        "curves": str(curves),
    }
    if write:
        curves.parent.mkdir(parents=True, exist_ok=True)
        if several:
            write_ensemble(target, Ensemble(predictor.sources, list(predictor.weights), predictor.tta, result.best.to_dict(), tuning))
        else:
            card = read_model_card(resolve_weights(models[0]))  # the same type in and out: the card stays valid
            card = card.model_copy(
                update={
                    "operating_point": result.best,
                    "metrics": card.metrics | {"val_dice_tuned": result.best_dice},
                    "tuning": tuning,
                }
            )
            write_card(target, card)
    threshold_curves(result.threshold_sweep, curves)
    return TuneOutcome(result, target if write else None, curves, fold, len(ids), predictor.tta, tuning["source"])
