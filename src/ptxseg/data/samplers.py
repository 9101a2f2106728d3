"""Class-balanced sampling of training images.

Pneumothorax is present on about 22 % of SIIM images, so the published
recipes rebalance what the model sees:

* :func:`class_balanced_weights` — per-image weights for torch's
  ``WeightedRandomSampler``: ``w_pos = N_neg / N`` and ``w_neg = N_pos / N``,
  so each class makes half of the draws in expectation.
* :class:`PositiveShareSampler` — each epoch takes **all** positive images plus
  enough negatives (drawn without replacement while they last) for positives
  to make a given share of the epoch, with a per-epoch schedule (the 1st-place
  recipe uses 0.8, then 0.6, then 0.4). With ``num_replicas > 1`` each rank
  iterates its own slice of the same epoch, as ``DistributedSampler`` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from ptxseg.errors import PtxsegError


def class_balanced_weights(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-image sampling weights (float64, one per label): ``N_neg/N`` for positives, ``N_pos/N`` for negatives."""
    y = np.asarray(labels).astype(bool)
    n = y.size
    n_pos = int(y.sum())
    if n_pos in (0, n):
        return np.full(n, 1.0 / max(n, 1))
    return np.where(y, (n - n_pos) / n, n_pos / n)


class PositiveShareSampler(Sampler[int]):
    """All positives plus negatives so that positives are ``share`` of each epoch.

    Args:
        labels: 0/1 per dataset index.
        share: the positive share, or a list of shares per epoch (the last one
            holds for later epochs).
        seed: epochs are deterministic for (seed, epoch); call :meth:`set_epoch`.
        num_replicas, rank: for distributed training; every rank sees an equal
            slice (the epoch is padded by repeating its first indices).

    When fewer negatives exist than a share asks for, all negatives are used
    and positives end up over-represented.
    """

    def __init__(
        self, labels: Sequence[int] | np.ndarray, share: float | Sequence[float], seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        y = np.asarray(labels).astype(bool)
        self.pos, self.neg = np.flatnonzero(y), np.flatnonzero(~y)
        shares = [float(share)] if np.isscalar(share) else [float(s) for s in share]
        if not shares or any(not 0.0 < s <= 1.0 for s in shares):
            raise PtxsegError("sampler.positive_share", f"shares must be in (0, 1], got {shares}")
        if self.pos.size == 0:
            raise PtxsegError("sampler.positive_share", "the training set has no positive image")
        if not 0 <= rank < num_replicas:
            raise PtxsegError("sampler", f"rank {rank} outside 0..{num_replicas - 1}")
        self.shares, self.seed, self.num_replicas, self.rank = shares, seed, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def share(self, epoch: int | None = None) -> float:
        """The positive share asked for at ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        return self.shares[min(e, len(self.shares) - 1)]

    def _n_negatives(self) -> int:
        s = self.share()
        return min(self.neg.size, round(self.pos.size * (1 - s) / s))

    def epoch_indices(self) -> np.ndarray:
        """All indices of the current epoch, over every rank, in draw order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        chosen = np.concatenate([self.pos, rng.choice(self.neg, self._n_negatives(), replace=False)])
        return rng.permutation(chosen)

    def _per_rank(self, total: int) -> int:
        return -(-total // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        per_rank = self._per_rank(len(idx))
        padded = np.resize(idx, per_rank * self.num_replicas)  # repeats the first indices to fill
        return iter(padded[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self._per_rank(self.pos.size + self._n_negatives())
