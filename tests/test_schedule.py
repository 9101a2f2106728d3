"""Learning-rate schedules: warm-up, cosine, warm restarts and their cycle ends, one-cycle, plateau; state round trip."""

from __future__ import annotations

import pytest
import torch

from ptxseg.errors import PtxsegError
from ptxseg.optim import Schedule, SchedulerConfig, build_optimizer
from ptxseg.train.tracking import TensorboardTracker

# these tests step schedules without optimiser steps, which torch warns about
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")


def _opt(lr=1.0):
    from ptxseg.optim import OptimizerConfig

    return build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimizerConfig(name="sgd", lr=lr, momentum=0.0))


def test_linear_warmup_then_cosine():
    opt = _opt()
    s = Schedule(opt, SchedulerConfig(name="cosine", warmup_epochs=1, min_lr=0.0), epochs=4, steps_per_epoch=4)
    lrs = [s.lr]
    for _ in range(4):
        s.step_batch()
        lrs.append(s.lr)
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # (step + 1) / (warm-up steps + 1)
    for epoch in range(4):
        s.step_epoch(epoch, 0.5)
    assert s.lr == pytest.approx(0.0, abs=1e-12)  # cosine over the 4 epochs


def test_cyclic_cycle_ends_and_restarts():
    s = Schedule(_opt(), SchedulerConfig(name="cyclic", t_0=2, t_mult=2), epochs=10, steps_per_epoch=1)
    assert s.cycle_ends == {1, 5}  # cycles of 2 then 4 epochs (the next would end after epoch 13)
    lrs = []
    for e in range(6):
        assert s.step_epoch(e, 0.0) == (e in {1, 5})
        lrs.append(s.lr)
    assert lrs[1] == pytest.approx(1.0) and lrs[0] < 1.0  # restarted after the first cycle


def test_plateau_reduces_on_validation_dice():
    s = Schedule(_opt(), SchedulerConfig(name="plateau", factor=0.5, patience=1), epochs=10, steps_per_epoch=1)
    for e, dice in enumerate([0.5, 0.6, 0.6, 0.6]):
        s.step_epoch(e, dice)
    assert s.lr == pytest.approx(0.5)


def test_onecycle_and_state_round_trip():
    opt = _opt()
    s = Schedule(opt, SchedulerConfig(name="onecycle", pct_start=0.5), epochs=2, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        s.step_batch()
        lrs.append(s.lr)
    peak = lrs.index(max(lrs))
    assert 3 <= peak <= 5 and lrs[-1] < lrs[0]
    state = s.state_dict()
    s2 = Schedule(_opt(), SchedulerConfig(name="onecycle", pct_start=0.5), epochs=2, steps_per_epoch=5)
    s2.load_state_dict(state)
    assert s2.step_count == 10 and s2.sched.state_dict()["last_epoch"] == s.sched.state_dict()["last_epoch"]


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(PtxsegError, match="tensorboard is not installed"):
        TensorboardTracker()


def test_a_cosine_decay_fitted_to_the_epochs_a_budget_allows():
    import math

    opt = _opt()
    s = Schedule(opt, SchedulerConfig(name="cosine", min_lr=0.01), epochs=30, steps_per_epoch=1)
    s.step_epoch(0, 0.0)
    planned_30 = s.lr
    assert planned_30 == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi / 30)) / 2)
    assert s.fit_to(5)  # after one epoch the budget allows five in all
    lrs = []
    for epoch in range(1, 5):
        s.step_epoch(epoch, 0.0)
        lrs.append(s.lr)
    assert lrs[-1] == pytest.approx(0.01)  # the decay ends with the budget, not 25 epochs after it
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert not s.fit_to(3)  # an end already passed is not planned
    for epoch in range(5, 8):  # the budget allowed more than planned: the rate holds at its minimum, never climbs
        s.step_epoch(epoch, 0.0)
        assert s.lr == pytest.approx(0.01)
    fixed = Schedule(_opt(), SchedulerConfig(name="cosine", t_max=30), epochs=30, steps_per_epoch=1)
    assert not fixed.fit_to(5)  # an explicit t_max is the recipe's own choice
    assert not Schedule(_opt(), SchedulerConfig(name="plateau"), epochs=30, steps_per_epoch=1).fit_to(5)
