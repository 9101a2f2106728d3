"""Optimisers and learning-rate schedules from config values.

:class:`Schedule` wraps one torch scheduler with the two clocks the recipes
use: per optimiser step (linear warm-up, one-cycle) and per epoch (plateau on
validation Dice, cosine, cosine with warm restarts). It reports the epochs that
end a warm-restart cycle, where snapshot ensembles save a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, OneCycleLR, ReduceLROnPlateau

from ptxseg.config import OptimizerConfig, SchedulerConfig

_OPTIMIZERS = {
    "adam": lambda params, c, lr: torch.optim.Adam(params, lr=lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c, lr: torch.optim.AdamW(params, lr=lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c, lr: torch.optim.SGD(
        params, lr=lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=c.momentum > 0
    ),
}


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` over ``params`` (frozen parameters included: they get no gradient, so no update)."""
    return _OPTIMIZERS[cfg.name](list(params), cfg, lr or cfg.lr)


class Schedule:
    """A learning-rate schedule of ``epochs × steps_per_epoch`` optimiser steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer, self.cfg = optimizer, cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = 0 if cfg.name == "onecycle" else round(cfg.warmup_epochs * self.steps_per_epoch)
        self.step_count = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        name = cfg.name
        if name == "plateau":
            self.sched: Any = ReduceLROnPlateau(optimizer, mode="max", factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr)
        elif name == "cosine":
            self.sched = CosineAnnealingLR(optimizer, T_max=cfg.t_max or epochs, eta_min=cfg.min_lr)
        elif name == "cyclic":
            self.sched = CosineAnnealingWarmRestarts(optimizer, T_0=cfg.t_0, T_mult=cfg.t_mult, eta_min=cfg.min_lr)
        elif name == "onecycle":
            self.sched = OneCycleLR(
                optimizer, max_lr=self.base_lrs, total_steps=epochs * self.steps_per_epoch, pct_start=cfg.pct_start
            )
        else:
            self.sched = None
        self.cycle_ends = self._cycle_ends(epochs) if name == "cyclic" else set()
        if self.warmup_steps:
            self._set_scale(1.0 / (self.warmup_steps + 1))

    def _cycle_ends(self, epochs: int) -> set[int]:
        ends, length, end = set(), self.cfg.t_0, self.cfg.t_0
        while end <= epochs:
            ends.add(end - 1)
            length *= self.cfg.t_mult
            end += length
        return ends

    def _scheduled_lrs(self) -> list[float]:
        if self.sched is None:
            return self.base_lrs
        return list(getattr(self.sched, "_last_lr", None) or self.base_lrs)

    def _set_scale(self, scale: float) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._scheduled_lrs(), strict=True):
            group["lr"] = lr * scale

    def step_batch(self) -> None:
        """After each optimiser step."""
        self.step_count += 1
        if self.cfg.name == "onecycle":
            if self.step_count < self.sched.total_steps:
                self.sched.step()
        elif self.step_count <= self.warmup_steps:
            self._set_scale(min(1.0, (self.step_count + 1) / (self.warmup_steps + 1)))

    def step_epoch(self, epoch: int, val_dice: float) -> bool:
        """After epoch ``epoch`` (0-based) is validated; returns True when it ends a warm-restart cycle."""
        if self.step_count >= self.warmup_steps:
            self._set_scale(1.0)  # epoch schedulers compute from the scheduled LR, not a warm-up value
        if isinstance(self.sched, ReduceLROnPlateau):
            self.sched.step(val_dice)
        elif isinstance(self.sched, CosineAnnealingLR | CosineAnnealingWarmRestarts):
            self.sched.step()
        return epoch in self.cycle_ends

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "sched": self.sched.state_dict() if self.sched is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        if self.sched is not None and state["sched"] is not None:
            self.sched.load_state_dict(state["sched"])
