"""Optimisers and learning-rate schedules from config values, each kind behind a registry.

:data:`OPTIMIZERS` and :data:`SCHEDULERS` are the names a config can use (the schema takes them from here).

:class:`Schedule` wraps one torch scheduler with the two clocks the recipes
use: per optimiser step (linear warm-up, one-cycle) and per epoch (plateau on
validation Dice, cosine, cosine with warm restarts). It reports the epochs that
end a warm-restart cycle, where snapshot ensembles save a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, OneCycleLR, ReduceLROnPlateau

from ptxseg.registry import Registry

#: ``factory(params, optimizer config, lr) -> torch.optim.Optimizer``
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimiser", "optimizer.name")
OPTIMIZERS.register("adam", lambda params, c, lr: torch.optim.Adam(params, lr=lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("adamw", lambda params, c, lr: torch.optim.AdamW(params, lr=lr, weight_decay=c.weight_decay))
OPTIMIZERS.register(
    "sgd",
    lambda params, c, lr: torch.optim.SGD(params, lr=lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=c.momentum > 0),
)

#: ``factory(optimizer, scheduler config, epochs, steps per epoch) -> torch scheduler or None`` (None: constant LR)
SCHEDULERS: Registry[Callable[..., Any]] = Registry("scheduler", "scheduler.name")
SCHEDULERS.register("none", lambda opt, c, epochs, steps: None)
SCHEDULERS.register(
    "plateau", lambda opt, c, epochs, steps: ReduceLROnPlateau(opt, mode="max", factor=c.factor, patience=c.patience, min_lr=c.min_lr)
)
SCHEDULERS.register("cosine", lambda opt, c, epochs, steps: CosineAnnealingLR(opt, T_max=c.t_max or epochs, eta_min=c.min_lr))
SCHEDULERS.register(
    "cyclic", lambda opt, c, epochs, steps: CosineAnnealingWarmRestarts(opt, T_0=c.t_0, T_mult=c.t_mult, eta_min=c.min_lr)
)
SCHEDULERS.register(
    "onecycle",
    lambda opt, c, epochs, steps: OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=epochs * steps, pct_start=c.pct_start
    ),
)


class _Settings(BaseModel):
    # as every config section (ptxseg.config): unknown keys and non-finite numbers are errors
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class OptimizerConfig(_Settings):
    """The ``optimizer`` section of a config (its schema lives here, beside the registry it names)."""

    name: OPTIMIZERS.field() = Field("adam", description="torch.optim optimiser.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (L2 for adam/sgd, decoupled for adamw).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")


class SchedulerConfig(_Settings):
    """The ``scheduler`` section of a config."""

    name: SCHEDULERS.field() = Field(
        "none",
        description="plateau: ReduceLROnPlateau on validation Dice; cosine: CosineAnnealingLR over t_max epochs; "
        "cyclic: CosineAnnealingWarmRestarts (t_0, t_mult), a snapshot at each cycle end; onecycle: OneCycleLR per step.",
    )
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: LR multiplier.")
    patience: int = Field(5, ge=0, description="plateau: epochs without improvement before reducing.")
    min_lr: float = Field(0.0, ge=0, description="Lowest LR (plateau, cosine, cyclic).")
    t_max: int | None = Field(None, ge=1, description="cosine: period in epochs (default: the stage's epochs).")
    t_0: int = Field(5, ge=1, description="cyclic: first cycle length in epochs.")
    t_mult: int = Field(1, ge=1, description="cyclic: cycle length multiplier.")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: share of steps spent increasing the LR.")
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up from 0 over this many epochs (per step), before the schedule.")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` over ``params`` (frozen parameters included: they get no gradient, so no update)."""
    return OPTIMIZERS[cfg.name](list(params), cfg, lr or cfg.lr)


class Schedule:
    """A learning-rate schedule of ``epochs × steps_per_epoch`` optimiser steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer, self.cfg = optimizer, cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = 0 if cfg.name == "onecycle" else round(cfg.warmup_epochs * self.steps_per_epoch)
        self.step_count = 0
        self.fitted = False  # fit_to re-planned the decay to a budget
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        name = cfg.name
        self.sched: Any = SCHEDULERS[name](optimizer, cfg, epochs, self.steps_per_epoch)
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
        if isinstance(self.sched, OneCycleLR):
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
        elif self.fitted and self.sched.last_epoch >= self.sched.T_max:
            pass  # a budget-fitted decay that has ended holds min_lr (a cosine stepped on would climb again)
        elif isinstance(self.sched, CosineAnnealingLR | CosineAnnealingWarmRestarts):
            self.sched.step()
        return epoch in self.cycle_ends

    def fit_to(self, epochs: int) -> bool:
        """Re-plan an epoch-length schedule to end after ``epochs`` epochs (a wall-clock budget allows no more).

        Only a cosine decay without an explicit ``t_max`` follows the run's length; it then reaches ``min_lr`` at
        the new end. Returns True when the plan changed.
        """
        if not isinstance(self.sched, CosineAnnealingLR) or self.cfg.t_max is not None:
            return False
        epochs = max(1, int(epochs))
        if epochs == self.sched.T_max or epochs <= self.sched.last_epoch:
            return False
        self.sched.T_max = epochs
        self.fitted = True
        return True

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "fitted": self.fitted,
            "sched": self.sched.state_dict() if self.sched is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.fitted = bool(state.get("fitted", False))
        if self.sched is not None and state["sched"] is not None:
            self.sched.load_state_dict(state["sched"])
