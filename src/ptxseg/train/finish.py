"""The end of a run: the final best weights validated once more, the operating point tuned on the validation
fold, bootstrap intervals at that point, and ``best.safetensors`` + ``best.json`` with the finished card."""

from __future__ import annotations

from typing import Any

import numpy as np

from ptxseg.artifacts.card import ModelCard
from ptxseg.measure.metrics import ImageStats, evaluate
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point
from ptxseg.train.validation import Validation

_KEEP = ("mean_dice", "dice_positive", "empty_correct", "case_sensitivity", "case_specificity", "auroc", "images", "positives")


def final_point(checked: Validation, op: OperatingPoint, tune: bool) -> tuple[OperatingPoint, float]:
    """The run's operating point and its validation Dice: ``op`` itself, or with ``tune`` the epoch-style tuned
    threshold × minimum mask (× classifier gate when there is a head); ``ptxseg tune`` searches the full grid."""
    if tune:
        return checked.tuned_point, checked.tuned_dice
    return op, float(checked.dice.mean())


def validation_at_point(checked: Validation, op: OperatingPoint) -> dict[str, Any]:
    """SIIM mean Dice, case sensitivity/specificity, AUROC (… ) of ``checked``'s probability maps at ``op``, with
    bootstrap 95 % intervals (1,000 resamples, seed 0) — the card's ``validation_at_operating_point``."""
    probs, heads = checked.probs, checked.heads
    masks = apply_operating_point(probs.astype(np.float32), op, heads)
    scores = heads if heads is not None else probs.reshape(len(probs), -1).max(1).astype(np.float64)
    at_point = evaluate(ImageStats.of(masks, checked.truths, score=list(map(float, scores))), n_boot=1000, seed=0)
    validation = {k: at_point[k] for k in _KEEP if k in at_point}
    validation["ci95"] = {k: v for k, v in at_point.get("ci95", {}).items() if k in _KEEP}
    return validation


def finished_card(card: ModelCard, checked: Validation, op: OperatingPoint, tuned_dice: float) -> ModelCard:
    """``card`` (the best epoch's) with the final operating point and the validation numbers at it."""
    metrics = card.metrics | {
        "val_dice_tuned": tuned_dice,
        "tuned_at_size": int(checked.probs.shape[-1]),
        "validation_at_operating_point": validation_at_point(checked, op),
    }
    return card.model_copy(update={"operating_point": op, "metrics": metrics})
