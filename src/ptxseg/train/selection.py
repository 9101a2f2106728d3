"""The checkpoint policy of a training stage: which epochs are kept (best, top-k, cyclic snapshots) and when the
stage stops early — decided from each epoch's selection Dice (``training.select_by``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptxseg.train.epoch import EpochProgress


@dataclass
class StageBook(EpochProgress):
    """Per-stage bookkeeping saved with the resume state: the epoch in progress (``batch``, ``seen``, ``loss_sum``
    — what :func:`~ptxseg.train.epoch.train_epoch` advances, so a resumed epoch reports the whole epoch) and the
    checkpoint policy's record."""

    epoch: int = 0
    best: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    topk: list[list[Any]] = field(default_factory=list)  # [[dice, epoch], ...] best first
    done: bool = False
    seconds: float = 0.0


@dataclass
class Verdict:
    best: bool  # this epoch is the stage's best so far (its weights were saved as the stage's best)
    stop: bool  # early stopping: no improvement for `patience` epochs


@dataclass
class CheckpointPolicy:
    """Keeps a stage's checkpoints in ``folder``: ``stage{s}_best``, the ``top_k`` best (``stage{s}_top_epoch{e}``)
    and, with ``snapshots``, one at each cyclic-schedule cycle end; ``save(path, meta)`` writes the current weights.

    An epoch improves when its score beats the best by more than ``min_delta``; ``patience`` such epochs without
    improvement stop the stage (None: never). Only the ``writer`` process touches files.
    """

    folder: Path
    stage: int
    save: Callable[[Path, Any], None]
    top_k: int = 1
    snapshots: bool = False
    patience: int | None = None
    min_delta: float = 0.0
    writer: bool = True

    @property
    def best_path(self) -> Path:
        return self.folder / f"stage{self.stage}_best.safetensors"

    def after_epoch(self, book: StageBook, epoch: int, score: float, cycle_end: bool, meta: Any) -> Verdict:
        """Record epoch ``epoch`` with selection Dice ``score`` in ``book`` and keep what the policy keeps."""
        improved = score > book.best + self.min_delta
        is_best = score > book.best
        if is_best:
            book.best, book.best_epoch = score, epoch
            if self.writer:
                self.save(self.best_path, meta)
        book.bad_epochs = 0 if improved else book.bad_epochs + 1
        self._keep_topk(book, epoch, score, meta)
        if cycle_end and self.snapshots and self.writer:
            self.save(self.folder / f"stage{self.stage}_snapshot_epoch{epoch}.safetensors", meta)
        stop = self.patience is not None and book.bad_epochs >= self.patience
        return Verdict(best=is_best, stop=stop)

    def _keep_topk(self, book: StageBook, epoch: int, score: float, meta: Any) -> None:
        if self.top_k <= 1:
            return
        book.topk.append([score, epoch])
        book.topk.sort(key=lambda r: (-r[0], r[1]))
        dropped, book.topk = book.topk[self.top_k :], book.topk[: self.top_k]
        if not self.writer:
            return
        if [score, epoch] in book.topk:
            self.save(self.folder / f"stage{self.stage}_top_epoch{epoch}.safetensors", meta)
        for _, e in dropped:
            for suffix in (".safetensors", ".json"):
                (self.folder / f"stage{self.stage}_top_epoch{e}{suffix}").unlink(missing_ok=True)
