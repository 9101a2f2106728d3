"""Class-balanced weights and the positive-share sampler (shares, schedule, determinism, ranks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from ptxseg.data.samplers import PositiveShareSampler, class_balanced_weights
from ptxseg.errors import PtxsegError

LABELS = np.array([1] * 22 + [0] * 78)


def test_class_balanced_weights_give_half_positives():
    w = class_balanced_weights(LABELS)
    assert w[0] == pytest.approx(0.78) and w[-1] == pytest.approx(0.22)
    assert w[LABELS == 1].sum() == pytest.approx(w[LABELS == 0].sum())
    draws = list(WeightedRandomSampler(torch.tensor(w), 20_000, generator=torch.Generator().manual_seed(0)))
    assert LABELS[draws].mean() == pytest.approx(0.5, abs=0.02)


def test_positive_share_and_schedule():
    sampler = PositiveShareSampler(LABELS, share=[0.8, 0.6, 0.4], seed=3)
    for epoch, share in enumerate([0.8, 0.6, 0.4, 0.4]):
        sampler.set_epoch(epoch)
        idx = list(sampler)
        assert len(idx) == len(sampler) == len(set(idx))  # no repeats within an epoch
        assert set(np.flatnonzero(LABELS)) <= set(idx)  # every positive, every epoch
        assert LABELS[idx].mean() == pytest.approx(share, abs=0.02)


def test_share_capped_by_available_negatives():
    sampler = PositiveShareSampler(LABELS, share=0.1)
    idx = list(sampler)
    assert len(idx) == 100 and LABELS[idx].mean() == pytest.approx(0.22)


def test_deterministic_per_seed_and_epoch():
    a, b, c = (PositiveShareSampler(LABELS, 0.5, seed=s) for s in (1, 1, 2))
    assert list(a) == list(b) and list(a) != list(c)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_distributed_ranks_split_one_epoch():
    ranks = [PositiveShareSampler(LABELS, 0.6, seed=5, num_replicas=3, rank=r) for r in range(3)]
    parts = [list(s) for s in ranks]
    assert len({len(p) for p in parts}) == 1
    epoch = PositiveShareSampler(LABELS, 0.6, seed=5).epoch_indices()
    assert set().union(*map(set, parts)) == set(epoch.tolist())


def test_bad_arguments():
    with pytest.raises(PtxsegError, match="shares"):
        PositiveShareSampler(LABELS, 1.5)
    with pytest.raises(PtxsegError, match="no positive"):
        PositiveShareSampler(np.zeros(10), 0.5)
