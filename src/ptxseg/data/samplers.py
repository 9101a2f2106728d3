r"""Class-balanced sampling of training images.

Pneumothorax is present on about 22 % of SIIM images, so the published
recipes rebalance what the model sees:

* :func:`class_balanced_weights` — per-image weights for torch's
  ``WeightedRandomSampler``: ``w_pos = N_neg / N`` and ``w_neg = N_pos / N``,
  so each class makes half of the draws in expectation.
* :class:`WeightedSampler` — draws with replacement by those weights (as
  ``WeightedRandomSampler``).
* :class:`PositiveShareSampler` — each epoch takes **all** positive images plus
  enough negatives (drawn without replacement while they last) for positives
  to make a given share of the epoch, with a per-epoch schedule (the 1st-place
  recipe uses 0.8, then 0.6, then 0.4).
* :class:`ShuffleSampler` — every image once per epoch.

All three are :class:`EpochSampler`\ s: an epoch's order is a pure function of
``(seed, epoch)``, so a resumed run sees the same batches; with
``num_replicas > 1`` each rank iterates its own slice of the same epoch, as
``DistributedSampler`` does, and :meth:`EpochSampler.skip` starts an epoch
part-way (resuming mid-epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from ptxseg.errors import PtxsegError
from ptxseg.registry import Registry


def class_balanced_weights(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-image sampling weights (float64, one per label): ``N_neg/N`` for positives, ``N_pos/N`` for negatives."""
    y = np.asarray(labels).astype(bool)
    n = y.size
    n_pos = int(y.sum())
    if n_pos in (0, n):
        return np.full(n, 1.0 / max(n, 1))
    return np.where(y, (n - n_pos) / n, n_pos / n)


class EpochSampler(Sampler[int]):
    """An epoch order drawn from ``(seed, epoch)``, sliced by rank; subclasses define :meth:`epoch_indices`."""

    def __init__(self, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise PtxsegError("sampler", f"rank {rank} outside 0..{num_replicas - 1}")
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (and clear any :meth:`skip`)."""
        self.epoch = int(epoch)
        self._skip = 0

    def skip(self, n: int) -> None:
        """Leave out this rank's first ``n`` indices of the current epoch (to resume part-way through it)."""
        self._skip = int(n)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def epoch_indices(self) -> np.ndarray:
        """All indices of the current epoch, over every rank, in draw order."""
        raise NotImplementedError

    def _epoch_size(self) -> int:
        raise NotImplementedError

    def _per_rank(self, total: int) -> int:
        return -(-total // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        per_rank = self._per_rank(len(idx))
        padded = np.resize(idx, per_rank * self.num_replicas)  # repeats the first indices to fill
        return iter(padded[self.rank :: self.num_replicas][self._skip :].tolist())

    def __len__(self) -> int:
        return max(0, self._per_rank(self._epoch_size()) - self._skip)


class ShuffleSampler(EpochSampler):
    """Every index once per epoch, shuffled."""

    def __init__(self, n: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(seed, num_replicas, rank)
        self.n = int(n)

    def epoch_indices(self) -> np.ndarray:
        return self._rng().permutation(self.n)

    def _epoch_size(self) -> int:
        return self.n


class WeightedSampler(EpochSampler):
    """``num_samples`` draws with replacement, index ``i`` with probability ∝ ``weights[i]``."""

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(seed, num_replicas, rank)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or (w < 0).any() or w.sum() <= 0:
            raise PtxsegError("sampler.weighted", "weights must be a non-empty vector of non-negative numbers with a positive sum")
        self.p = w / w.sum()
        self.num_samples = int(num_samples or w.size)

    def epoch_indices(self) -> np.ndarray:
        return self._rng().choice(self.p.size, self.num_samples, replace=True, p=self.p)

    def _epoch_size(self) -> int:
        return self.num_samples


class PositiveShareSampler(EpochSampler):
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
        super().__init__(seed, num_replicas, rank)
        y = np.asarray(labels).astype(bool)
        self.pos, self.neg = np.flatnonzero(y), np.flatnonzero(~y)
        shares = [float(share)] if np.isscalar(share) else [float(s) for s in share]
        if not shares or any(not 0.0 < s <= 1.0 for s in shares):
            raise PtxsegError("sampler.positive_share", f"shares must be in (0, 1], got {shares}")
        if self.pos.size == 0:
            raise PtxsegError("sampler.positive_share", "the training set has no positive image")
        self.shares = shares

    def share(self, epoch: int | None = None) -> float:
        """The positive share asked for at ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        return self.shares[min(e, len(self.shares) - 1)]

    def _n_negatives(self) -> int:
        s = self.share()
        return min(self.neg.size, round(self.pos.size * (1 - s) / s))

    def epoch_indices(self) -> np.ndarray:
        rng = self._rng()
        chosen = np.concatenate([self.pos, rng.choice(self.neg, self._n_negatives(), replace=False)])
        return rng.permutation(chosen)

    def _epoch_size(self) -> int:
        return self.pos.size + self._n_negatives()


def stratum_factors(strata: Sequence[str] | None, weights: Mapping[str, float]) -> np.ndarray:
    """Per-image draw multipliers (float64, one per entry of ``strata``): ``weights[stratum]``, 1 for others.

    Raises:
        PtxsegError: ``strata`` is None (the dataset names none) or ``weights`` names a stratum no image is in.
    """
    if strata is None:
        raise PtxsegError("sampler.stratum_weights", "the dataset's folds.csv has no 'stratum' column (convert --stratify COLUMN)")
    unknown = sorted(set(weights) - set(strata))
    if unknown:
        raise PtxsegError(
            "sampler.stratum_weights",
            f"no training image is in stratum {', '.join(map(repr, unknown))} "
            f"(the strata are {', '.join(map(repr, sorted(set(strata))))})",
        )
    return np.array([weights.get(s, 1.0) for s in strata], dtype=np.float64)


#: ``builder(labels, share, factors, seed, num_replicas, rank) -> EpochSampler``; ``factors`` multiply each
#: image's draw weight (samplers that draw by weight use them; the others refuse factors other than 1)
SAMPLERS: Registry[Callable[..., EpochSampler]] = Registry("sampler", "sampler.kind")


def _no_factors(kind: str, factors: np.ndarray) -> None:
    if not np.all(factors == 1):
        raise PtxsegError("sampler.stratum_weights", f"sampler {kind!r} draws every image alike; use kind: weighted")


@SAMPLERS.register("shuffle")
def _shuffle(labels, share, factors, seed, num_replicas, rank) -> EpochSampler:
    _no_factors("shuffle", factors)
    return ShuffleSampler(len(labels), seed, num_replicas, rank)


@SAMPLERS.register("weighted")
def _weighted(labels, share, factors, seed, num_replicas, rank) -> EpochSampler:
    return WeightedSampler(class_balanced_weights(labels) * factors, len(labels), seed, num_replicas, rank)


@SAMPLERS.register("positive_share")
def _positive_share(labels, share, factors, seed, num_replicas, rank) -> EpochSampler:
    _no_factors("positive_share", factors)
    return PositiveShareSampler(labels, share, seed, num_replicas, rank)
