"""One training epoch on its own (``ptxseg.train.epoch``): accumulation, clipping, mixed precision, channels-last and
a diverging loss, each checked for what it does rather than for finishing."""

from __future__ import annotations

import pytest
import torch

from ptxseg.errors import PtxsegError
from ptxseg.train.epoch import EpochPlan, EpochProgress, train_epoch


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # no batch norm: a batch split in two must give the same gradient as the whole
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _data(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), (torch.rand(n, 1, 16, 16, generator=g) > 0.7).float()


def _mse(out, y):
    return torch.nn.functional.mse_loss(out, y)


def _plan(model, **kw) -> EpochPlan:
    opt = torch.optim.SGD(model.parameters(), lr=kw.pop("lr", 0.1))
    return EpochPlan(opt, _mse, torch.amp.GradScaler("cpu", enabled=False), **kw)


def _batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_k_accumulated_batches_are_one_step_on_their_union():
    x, y = _data(8)
    one = _net()
    out = train_epoch(one, _batches(x, y, 8), 1, _plan(one), EpochProgress())
    accum = _net()
    out_k = train_epoch(accum, _batches(x, y, 2), 4, _plan(accum, accum_steps=4), EpochProgress())
    assert out.steps == out_k.steps == 1  # four batches of 2, one optimiser step
    for a, b in zip(one.parameters(), accum.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    plain = _net()
    train_epoch(plain, _batches(x, y, 2), 4, _plan(plain), EpochProgress())  # four steps: not the same weights
    assert any(not torch.allclose(a, b) for a, b in zip(one.parameters(), plain.parameters(), strict=True))


def test_the_last_batch_of_an_epoch_steps_even_when_the_group_is_short():
    x, y = _data(6)
    model = _net()
    out = train_epoch(model, _batches(x, y, 2), 3, _plan(model, accum_steps=2), EpochProgress())
    assert out.steps == 2  # batches 1+2, then batch 3 alone


def test_clipping_bounds_the_gradient_norm():
    x, y = _data(4)
    y = y * 50  # a large error: the raw gradient norm is far above the bound
    model = _net()
    before = [p.detach().clone() for p in model.parameters()]
    train_epoch(model, _batches(x, y, 4), 1, _plan(model, lr=1.0, clip_grad=0.5), EpochProgress())
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True)))
    assert step == pytest.approx(0.5, rel=1e-4)  # SGD with lr 1: the update is the clipped gradient
    free = _net()
    train_epoch(free, _batches(x, y, 4), 1, _plan(free, lr=1.0), EpochProgress())
    unclipped = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(free.parameters(), before, strict=True)))
    assert unclipped > 5  # so the bound above did something


def test_bf16_autocast_and_channels_last_reach_the_network():
    seen = {}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    # two input channels: with one, both memory layouts are the same tensor
    model[0].register_forward_hook(
        lambda m, i, o: seen.update(dtype=o.dtype, cl=i[0].is_contiguous(memory_format=torch.channels_last) and i[0].stride(1) == 1)
    )
    x, y = _data(2)
    x = torch.cat([x, -x], 1)
    progress = EpochProgress()
    train_epoch(model, _batches(x, y, 2), 1, _plan(model, amp="bf16", channels_last=True), progress)
    assert seen == {"dtype": torch.bfloat16, "cl": True}
    assert progress.batch == 1 and progress.seen == 2 and progress.loss_sum > 0
    train_epoch(model, _batches(x, y, 2), 1, _plan(model), EpochProgress())
    assert seen == {"dtype": torch.float32, "cl": False}


def test_a_diverging_loss_stops_the_epoch_with_where_it_happened():
    x, y = _data(4)
    x[2:] = float("nan")
    model = _net()
    with pytest.raises(PtxsegError, match="the training loss at batch 2 is NaN or infinite"):
        train_epoch(model, _batches(x, y, 2), 2, _plan(model), EpochProgress())


def test_a_step_callback_stops_the_epoch():
    x, y = _data(8)
    model = _net()
    progress = EpochProgress()
    out = train_epoch(model, _batches(x, y, 2), 4, _plan(model), progress, after_step=lambda steps: "budget" if steps == 2 else None)
    assert out.stopped == "budget" and out.steps == 2 and progress.batch == 2
