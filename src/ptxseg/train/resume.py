"""The resume state of a run: everything needed to continue a stage at the step it stopped — model, optimiser,
schedule, scaler, RNG, the stage's book (epoch, batch within it, best-so-far) and the run's step count —
saved as safetensors + JSON into ``RUN/state``."""

from __future__ import annotations

from typing import Any

import torch

from ptxseg.artifacts.checkpoint import load_state, save_state, unwrap
from ptxseg.io.tensors import non_finite_tensors
from ptxseg.train.result import diverged
from ptxseg.train.rundir import RunDir
from ptxseg.train.selection import StageBook
from ptxseg.train.stage import StageParts


def save_resume_state(run: RunDir, stage_idx: int, parts: StageParts, global_step: int) -> None:
    """Replace ``run``'s resume state with stage ``stage_idx``'s current one.

    Raises:
        PtxsegError: a weight is NaN or infinite (the last good state is kept).
    """
    book, schedule = parts.book, parts.schedule
    weights = unwrap(parts.model).state_dict()
    if non_finite_tensors(weights):
        raise diverged(run.path, f"a weight after stage {stage_idx}, epoch {book.epoch + 1}, batch {book.batch}", schedule.lr)
    state = {
        "stage": stage_idx,
        "book": book.__dict__,
        "model": weights,
        "optimizer": parts.optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "global_step": global_step,
    }
    save_state(run.path / "state", state)


def load_resume_state(run: RunDir) -> dict[str, Any]:
    """``run``'s resume state; the records of epochs validated after it are dropped from ``metrics.jsonl`` (they
    are re-done)."""
    saved = load_state(run.path / "state")
    book = StageBook(**saved["book"])
    done_stage, done_epoch = saved["stage"], book.epoch
    run.truncate_history(lambda r: (r["stage"], r["epoch"]) < (done_stage, done_epoch))
    run.log(f"resumed at stage {done_stage} epoch {done_epoch} batch {book.batch}")
    return saved
