"""One training epoch: forward and loss under autocast, gradient accumulation, clipping, the optimiser and
schedule steps, and the two reasons to stop part-way (a signal, a spent budget).

:func:`train_epoch` knows nothing of checkpoints, validation or run directories: it is handed what to train and
a few callables, so the loop's arithmetic — that ``k`` accumulated batches make one step on their union, that
clipping bounds the gradient norm — is tested on its own (``tests/test_train_epoch.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from ptxseg.errors import PtxsegError
from ptxseg.models import SegOutput


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """The autocast context of ``training.amp`` (none, bf16, fp16) on ``device``."""
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def float_output(out: torch.Tensor | SegOutput) -> torch.Tensor | SegOutput:
    """The model output in float32 (losses are computed in full precision under mixed precision)."""
    if isinstance(out, SegOutput):
        return SegOutput(
            out.logits.float(), [a.float() for a in out.aux], out.aux_weights, None if out.cls is None else out.cls.float()
        )
    return out.float()


@dataclass
class EpochProgress:
    """Where an epoch stands: batches done (for a resume part-way) and running sums for the epoch's record."""

    batch: int = 0
    seen: int = 0
    loss_sum: float = 0.0


@dataclass(frozen=True, kw_only=True)
class BatchEvent:
    """One training batch done, for progress displays: ``batch`` of ``batches`` (1-based) of epoch ``epoch``
    (0-based) of ``epochs`` in stage ``stage``; ``loss`` the epoch's running mean training loss."""

    stage: int
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float


@dataclass
class EpochPlan:
    """How to train: everything the loop needs besides the model and the data."""

    optimizer: torch.optim.Optimizer
    criterion: Callable[[Any, torch.Tensor], torch.Tensor]
    scaler: torch.amp.GradScaler
    step_schedule: Callable[[], None] = lambda: None  # after each optimiser step (warm-up, one-cycle)
    accum_steps: int = 1
    clip_grad: float | None = None
    amp: str = "none"
    channels_last: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    no_sync: Callable[[], AbstractContextManager] | None = None  # DDP: skip the all-reduce on accumulating batches


@dataclass
class EpochOutcome:
    """Why the epoch ended: all batches done, a signal arrived, or the budget ran out."""

    stopped: str | None = None  # None, "signal" or "budget"
    steps: int = 0  # optimiser steps taken


def train_epoch(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    total_batches: int,
    plan: EpochPlan,
    progress: EpochProgress,
    after_step: Callable[[int], str | None] = lambda step: None,
    on_batch: Callable[[float], None] = lambda loss: None,
    where: Callable[[int], str] = lambda batch: f"batch {batch}",
    diverged: Callable[[str], Exception] | None = None,
) -> EpochOutcome:
    """Train ``model`` on ``batches`` (the rest of an epoch of ``total_batches`` when ``progress.batch`` > 0).

    Each loss is divided by ``accum_steps`` and its gradient accumulated; every ``accum_steps``-th batch (and the
    last) unscales, clips the gradient norm to ``clip_grad``, steps the optimiser and the per-step schedule.
    ``after_step(step_count)`` runs after each optimiser step and may stop the epoch ("signal" or "budget").

    Raises:
        PtxsegError: the loss is NaN or infinite (code ``non_finite``), naming ``where(batch)`` — or the exception
            ``diverged(where(batch))`` makes.
    """
    outcome = EpochOutcome()
    for x, y in batches:
        x, y = x.to(plan.device, non_blocking=True), y.to(plan.device, non_blocking=True)
        if plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        last_of_group = (progress.batch + 1) % plan.accum_steps == 0 or progress.batch + 1 == total_batches
        sync = plan.no_sync() if (plan.no_sync is not None and not last_of_group) else nullcontext()
        with sync:
            with autocast(plan.device, plan.amp):
                out = model(x)
            loss = plan.criterion(float_output(out), y) / plan.accum_steps
            if not bool(torch.isfinite(loss.detach())):
                at = f"the training loss at {where(progress.batch + 1)}"
                raise diverged(at) if diverged else PtxsegError("training", f"{at} is NaN or infinite", code="non_finite")
            plan.scaler.scale(loss).backward()
        if last_of_group:
            if plan.clip_grad:
                plan.scaler.unscale_(plan.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), plan.clip_grad)
            plan.scaler.step(plan.optimizer)
            plan.scaler.update()
            plan.optimizer.zero_grad(set_to_none=True)
            plan.step_schedule()
            outcome.steps += 1
        progress.batch += 1
        progress.seen += len(x)
        progress.loss_sum += float(loss.detach()) * plan.accum_steps
        on_batch(progress.loss_sum / progress.batch)
        if last_of_group:
            stop = after_step(outcome.steps)
            if stop:
                outcome.stopped = stop
                break
    return outcome
