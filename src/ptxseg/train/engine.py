"""The training loop behind ``ptxseg train``.

One call of :func:`train` runs every stage of a config (one stage unless the
config lists progressive ``stages``; stage k+1 starts from stage k's best
weights), validates each epoch on the held-out fold with the SIIM mean Dice
at the configured operating point, keeps the best (and top-k, and cyclic
snapshot) checkpoints, stops early or when the wall-clock budget is spent, and
finally tunes the operating point on the validation fold and writes
``best.safetensors`` + ``best.json`` into the run directory.

The parts: :mod:`~ptxseg.train.facts` (what every card records), :mod:`~ptxseg.train.stage` (what a stage trains
with), :mod:`~ptxseg.train.epoch` (one epoch's batches), :mod:`~ptxseg.train.validation`,
:mod:`~ptxseg.train.selection` (which checkpoints are kept), :mod:`~ptxseg.train.finish` (the final operating
point). Progress is reported through the ``on_batch`` and ``on_epoch`` callbacks; the engine draws nothing.

The resume state (model, optimiser, schedule, scaler, RNG, stage, epoch and
step within the epoch, best-so-far bookkeeping) is saved every
``checkpoint_every_steps`` optimiser steps and after every epoch; a run killed
at any moment and resumed with ``--resume`` ends with the same numbers as an
uninterrupted run of the same seed on CPU.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from ptxseg.artifacts.checkpoint import load_model, save_weights
from ptxseg.config import Config, StageConfig, dump_config
from ptxseg.data.split import FoldSplit
from ptxseg.errors import PtxsegError
from ptxseg.measure.operating_point import OperatingPoint
from ptxseg.train import distributed as D
from ptxseg.train.data import make_loader, training_split
from ptxseg.train.epoch import BatchEvent, EpochPlan, train_epoch
from ptxseg.train.facts import RunFacts
from ptxseg.train.finish import final_point, finished_card
from ptxseg.train.result import TrainingInterrupted, TrainResult, diverged
from ptxseg.train.resume import load_resume_state, save_resume_state
from ptxseg.train.rundir import RunDir
from ptxseg.train.selection import Verdict
from ptxseg.train.stage import StageParts, build_stage, validation_loader
from ptxseg.train.validation import Validation, validate

__all__ = ["BatchEvent", "Trainer", "TrainResult", "TrainingInterrupted", "train"]

#: the epoch-record fields every checkpoint's card keeps
_CARD_METRICS = ("val_dice", "val_dice_pos", "val_empty_correct", "val_loss", "val_dice_tuned", "val_select")


@dataclass(kw_only=True)
class _EpochEnd:
    """How an epoch ended: its record, the checkpoint policy's verdict, and whether the budget cut it short."""

    record: dict[str, Any]
    verdict: Verdict
    budget_hit: bool


class Trainer:
    """Runs a config on a dataset into a run directory; see :func:`train`."""

    def __init__(
        self,
        cfg: Config,
        dataset: str | PathLike[str],
        run_dir: str | PathLike[str],
        *,
        fold: int | None = None,
        minutes: float | None = None,
        resume: bool = False,
        trackers: list | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_batch: Callable[[BatchEvent], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dataset = Path(dataset)
        self.fold = cfg.data.fold if fold is None else fold
        self.minutes = minutes
        self.resume = resume
        self.facts = RunFacts.read(cfg, self.dataset, self.fold)
        self.dist = D.init_distributed(cfg.training.device)
        main = self.dist.main
        self.trackers = (trackers or []) if main else []
        self.on_epoch = on_epoch if main else None
        self.on_batch = on_batch if main else None
        if cfg.training.amp == "fp16" and self.dist.device.type != "cuda":
            raise PtxsegError("training.amp", "fp16 needs a CUDA device (GradScaler); use bf16 on the CPU")
        self.run = RunDir(run_dir, writer=main)
        self.stages = cfg.resolved_stages()
        select = cfg.training.select_by
        self.select_tuned = select == "tuned" or (select == "auto" and cfg.postprocess.tune)
        #: the parts of the stage trained last: its validation loader is reused to tune when the preprocessing matches
        self.last_parts: StageParts | None = None
        self.global_step = 0  # optimiser steps over the whole run (trackers' x axis; checkpoint_every_steps)
        self._signal: str | None = None
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ helpers

    def _over_budget(self) -> bool:
        over = self.minutes is not None and time.monotonic() - self.t0 > self.minutes * 60
        return bool(D.broadcast(over, self.dist)) if self.dist.active else over

    def _stop_requested(self) -> bool:
        asked = self._signal is not None
        return bool(D.broadcast(asked, self.dist)) if self.dist.active else asked

    def _install_signals(self) -> list:
        if threading.current_thread() is not threading.main_thread():
            return []
        previous = []

        def handler(signum, frame):  # noqa: ARG001
            self._signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous.append((sig, signal.signal(sig, handler)))
        return previous

    def _op(self) -> OperatingPoint:
        return self.cfg.postprocess.point()

    def _validate(self, model, loader, keep_probs: bool = False) -> Validation:
        t = self.cfg.training
        diverged = lambda where: diverged(self.run.path, where)  # noqa: E731
        return validate(model, loader, self._op(), self.dist, t.amp, t.channels_last, keep_probs, diverged)

    # ------------------------------------------------------------------ the run

    def run_all(self) -> TrainResult:
        """Every stage, then the final operating point; see :func:`train`."""
        split = training_split(self.cfg, self.dataset, self.fold, self.dist)
        saved = self._start(split)
        for t in self.trackers:
            t.start(self.cfg, self.run.path)
        previous = self._install_signals()
        try:
            start_stage = saved["stage"] if saved else 0
            best_weights: Path | None = None
            stop_reason = "completed"
            for s_idx in range(len(self.stages)):
                if s_idx < start_stage:
                    best_weights = self.run.path / "checkpoints" / f"stage{s_idx}_best.safetensors"
                    continue
                stage_saved = saved if (saved and saved["stage"] == s_idx) else None
                stop_reason, best_weights = self._run_stage(s_idx, split, best_weights, stage_saved)
                if stop_reason == "budget":
                    break
            return self._finish(split, best_weights, stop_reason)
        finally:
            for sig, h in previous:
                signal.signal(sig, h)
            for t in self.trackers:
                t.end()
            self.run.close()

    def _start(self, split: FoldSplit) -> dict[str, Any] | None:
        """The resume state when resuming, else None after writing a fresh run directory's ``config.yaml``,
        ``env.json`` and ``run.json``."""
        if self.resume:
            saved = load_resume_state(self.run)
            self.global_step = int(saved["global_step"])
            return saved
        self.run.write_text("config.yaml", dump_config(self.cfg))
        self.run.write_json("env.json", self.facts.env)
        run_info = {"dataset": str(self.dataset.resolve()), "fold": self.fold, "world_size": self.dist.world}
        self.run.write_json("run.json", run_info | {"train_images": len(split.train_ids), "val_images": len(split.val_ids)})
        if self.dist.main and self.run.metrics_path.exists():
            self.run.metrics_path.unlink()
        return None

    def _save_state(self, stage_idx: int, parts: StageParts) -> None:
        if self.dist.main:
            save_resume_state(self.run, stage_idx, parts, self.global_step)

    def _run_stage(self, s_idx: int, split: FoldSplit, init_weights: Path | None, saved: dict[str, Any] | None) -> tuple[str, Path]:
        """Train stage ``s_idx`` until its epochs are done, it stops early or the budget is spent; returns why it
        ended ("completed", "early_stopping", "budget") and its best checkpoint."""
        stage = self.stages[s_idx]
        parts = build_stage(
            cfg=self.cfg,
            s_idx=s_idx,
            facts=self.facts,
            dist=self.dist,
            run=self.run,
            split=split,
            init_weights=init_weights,
            saved=saved,
        )
        self.last_parts = parts
        self.run.log(
            f"stage {s_idx}: size {stage.size}, {stage.epochs} epochs, lr {stage.lr}, "
            f"{len(split.train_ids)} training / {len(split.val_ids)} validation images"
        )
        plan = parts.epoch_plan(self.cfg, self.dist)
        epoch_times: list[float] = []  # seconds per epoch (training + validation) of this stage, for the budget plan
        book, stop_reason = parts.book, "completed"
        while book.epoch < stage.epochs and not book.done:
            end = self._epoch(s_idx, split, parts, plan, epoch_times)
            if end.budget_hit:
                stop_reason = "budget"  # not `done`: a resumed run goes on with the next epoch
            elif end.verdict.stop:
                stop_reason, book.done = "early_stopping", True
                self.run.log(f"early stopping: no improvement for {self.cfg.training.early_stopping.patience} epochs")
            self._save_state(s_idx, parts)
            if end.budget_hit:
                break
        if book.done and stop_reason == "completed":
            stop_reason = "early_stopping"
        return stop_reason, parts.policy.best_path

    def _epoch(self, s_idx: int, split: FoldSplit, parts: StageParts, plan: EpochPlan, epoch_times: list[float]) -> _EpochEnd:
        """One epoch of stage ``s_idx`` (the rest of it after a resume part-way): train, validate, keep checkpoints."""
        stage, book = self.stages[s_idx], parts.book
        epoch = book.epoch
        frozen = parts.start_epoch(stage)
        loader = make_loader(
            parts.train_ds, stage.batch_size, parts.sampler, self.cfg.data.workers, seed=self.cfg.training.seed * 1000 + epoch
        )
        t_epoch = time.monotonic() - book.seconds
        total_batches = book.batch + len(loader)

        def after_step(_steps: int) -> str | None:
            self.global_step += 1
            book.seconds = time.monotonic() - t_epoch
            if self._stop_requested():
                self._save_state(s_idx, parts)
                return "signal"
            every = self.cfg.training.checkpoint_every_steps
            if every and self.global_step % every == 0 and book.batch < total_batches:
                self._save_state(s_idx, parts)
            return "budget" if self._over_budget() else None

        def on_batch(loss: float) -> None:
            if self.on_batch is not None:
                self.on_batch(
                    BatchEvent(stage=s_idx, epoch=epoch, epochs=stage.epochs, batch=book.batch, batches=total_batches, loss=loss)
                )

        outcome = train_epoch(
            parts.ddp_model,
            loader,
            total_batches,
            plan,
            book,  # the epoch's progress lives in the stage book, so the resume state always holds it
            after_step,
            on_batch,
            where=lambda b: f"stage {s_idx}, epoch {epoch + 1}, batch {b}",
            diverged=lambda where: diverged(self.run.path, where, parts.schedule.lr),
        )
        if outcome.stopped == "signal":
            raise TrainingInterrupted(f"{self._signal}: state saved at stage {s_idx}, epoch {epoch + 1}, batch {book.batch}")
        budget_hit = outcome.stopped == "budget"
        seconds = time.monotonic() - t_epoch
        metrics = self._validate(parts.ddp_model, parts.val_loader).record()
        metrics["val_select"] = chosen = metrics["val_dice_tuned" if self.select_tuned else "val_dice"]
        metrics["select_by"] = "tuned" if self.select_tuned else "fixed"
        cycle_end = parts.schedule.step_epoch(epoch, chosen)
        if self.minutes is not None and not budget_hit:
            self._fit_budget(stage, epoch, parts, epoch_times, time.monotonic() - t_epoch)
        record = {
            "stage": s_idx,
            "epoch": epoch,
            "size": stage.size,
            "lr": parts.schedule.lr,
            "train_loss": book.loss_sum / max(book.batch, 1),
            **metrics,
            "images_per_s": book.seen * self.dist.world / max(seconds, 1e-9),
            "seconds": seconds,
            "frozen_blocks": frozen,
            "partial": budget_hit,
        }
        verdict = self._close_epoch(s_idx, split, parts, record, cycle_end)
        return _EpochEnd(record=record, verdict=verdict, budget_hit=budget_hit)

    def _fit_budget(self, stage: StageConfig, epoch: int, parts: StageParts, epoch_times: list[float], took: float) -> None:
        """Fit a cosine decay to the epochs the budget still allows, measured on the epochs done so far (their mean:
        one slow epoch does not cut the plan short)."""
        spent = time.monotonic() - self.t0
        epoch_times.append(took)
        per_epoch = sum(epoch_times) / len(epoch_times)
        fit = epoch + 1 + int(max(0.0, self.minutes * 60 - spent) // max(per_epoch, 1e-9))
        if fit < stage.epochs and parts.schedule.fit_to(fit):
            self.run.log(f"the budget allows about {fit} of {stage.epochs} epochs: cosine schedule fitted to {fit}")

    def _close_epoch(self, s_idx: int, split: FoldSplit, parts: StageParts, record: dict[str, Any], cycle_end: bool) -> Verdict:
        """Keep the epoch's checkpoints, record it everywhere (metrics.jsonl, trackers, ``on_epoch``, the log) and
        reset the book for the next epoch."""
        book, epoch = parts.book, record["epoch"]
        metrics = {k: record[k] for k in _CARD_METRICS} | {"epoch": epoch, "stage": s_idx}
        meta = self.facts.card(self.stages[s_idx], self._op(), metrics, split)
        verdict = parts.policy.after_epoch(book, epoch, record["val_select"], cycle_end, meta)
        record["best"] = verdict.best
        self.run.append_metrics(record)
        for t in self.trackers:
            t.log_metrics(record, self.global_step)
        if self.on_epoch is not None:
            self.on_epoch(record)
        self.run.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        book.epoch, book.batch, book.loss_sum, book.seen, book.seconds = epoch + 1, 0, 0.0, 0, 0.0
        return verdict

    def _finish(self, split: FoldSplit, best_weights: Path | None, stop_reason: str) -> TrainResult:
        """Tune the operating point with the final best weights and write ``best.safetensors``."""
        hist = self.run.history() if self.dist.main else []
        if best_weights is None or not Path(best_weights).is_file():
            raise PtxsegError(self.run.path, "no epoch was completed: nothing to save (raise --minutes?)")
        model, card = load_model(best_weights, self.dist.device)
        parts = self.last_parts
        if parts is not None and parts.pp == card.preprocessing:
            loader = parts.val_loader
        else:
            loader = validation_loader(self.cfg, self.dataset, split, card.preprocessing, self.dist)
        checked = self._validate(model, loader, keep_probs=True)
        op, tuned_dice = final_point(checked, self._op(), self.cfg.postprocess.tune)
        card = finished_card(card, checked, op, tuned_dice)
        if self.dist.main:
            save_weights(self.run.path / "best.safetensors", model, card)
            self.run.plot_curves()
            self.run.log(
                f"done ({stop_reason}): best val Dice {card.metrics['val_dice']:.4f}, tuned {tuned_dice:.4f} at {op.to_dict()}"
            )
            for t in self.trackers:
                t.log_artifacts(self.run.path)
        D.barrier(self.dist)
        return TrainResult(
            run_dir=self.run.path,
            best_dice=float(card.metrics["val_dice"]),
            best_epoch=int(card.metrics["epoch"]),
            operating_point=op.to_dict(),
            tuned_dice=tuned_dice,
            epochs_run=len(hist),
            stop_reason=stop_reason,
            seconds=time.monotonic() - self.t0,
            history=hist,
            select_dice=float(card.metrics.get("val_select", card.metrics["val_dice"])),
            select_by="tuned" if self.select_tuned else "fixed",
        )


def train(
    cfg: Config,
    dataset: str | PathLike[str],
    run_dir: str | PathLike[str],
    *,
    fold: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    trackers: list | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[[BatchEvent], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` on the canonical dataset ``dataset`` into ``run_dir``.

    Args:
        fold: validation fold (default: ``cfg.data.fold``).
        minutes: wall-clock budget; training stops after the step in progress
            once it is spent, validates, and keeps the best checkpoint.
        resume: continue the run saved in ``run_dir`` (its own config is used).
        on_epoch: called with each epoch's record on rank 0.
        on_batch: called with a :class:`~ptxseg.train.epoch.BatchEvent` after each training batch on rank 0
            (:class:`ptxseg.progress.EpochBars` draws bars from it).

    Raises:
        TrainingInterrupted: on SIGTERM/SIGINT, after saving the resume state.
        PtxsegError: bad dataset, fold or config values.
    """
    trainer = Trainer(
        cfg, dataset, run_dir, fold=fold, minutes=minutes, resume=resume, trackers=trackers, on_epoch=on_epoch, on_batch=on_batch
    )
    try:
        return trainer.run_all()
    finally:
        D.shutdown(trainer.dist)
