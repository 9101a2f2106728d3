"""What a training run ends with — a result, an interruption that can be resumed, or a divergence."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptxseg.errors import PtxsegError


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived; the state was saved and the run can be resumed."""


def diverged(run_dir: Path, where: str, lr: float | None = None) -> PtxsegError:
    """The error of a NaN or infinite loss or weight at ``where``: the run stops without saving broken weights."""
    at_lr = "" if lr is None else f" (learning rate {lr:.3g})"
    return PtxsegError(
        "training",
        f"diverged: {where} is NaN or infinite{at_lr}; stopped without saving the broken weights — "
        f"the last good checkpoints and resume state stay in {run_dir}. Lower optimizer.lr or set training.clip_grad.",
        code="non_finite",
    )


@dataclass(kw_only=True)
class TrainResult:
    """What a run ended with. ``best_dice`` is the chosen epoch's validation Dice at the configured operating
    point; ``select_dice`` the Dice it was chosen by (``training.select_by``: at the epoch's tuned point, or the same
    as ``best_dice``)."""

    run_dir: Path
    best_dice: float
    best_epoch: int
    operating_point: dict[str, Any]
    tuned_dice: float
    epochs_run: int
    stop_reason: str
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    select_dice: float = float("nan")
    select_by: str = "fixed"
