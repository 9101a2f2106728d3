"""The training loop behind ``ptxseg train``.

One call of :func:`train` runs every stage of a config (one stage unless the
config lists progressive ``stages``; stage k+1 starts from stage k's best
weights), validates each epoch on the held-out fold with the SIIM mean Dice
at the configured operating point, keeps the best (and top-k, and cyclic
snapshot) checkpoints, stops early or when the wall-clock budget is spent, and
finally tunes the operating point on the validation fold and writes
``best.safetensors`` + ``best.json`` into the run directory.

The resume state (model, optimiser, schedule, scaler, RNG, stage, epoch and
step within the epoch, best-so-far bookkeeping) is saved every
``checkpoint_every_steps`` optimiser steps and after every epoch; a run killed
at any moment and resumed with ``--resume`` ends with the same numbers as an
uninterrupted run of the same seed on CPU.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ptxseg.artifacts.card import Architecture, ModelCard, TrainingData
from ptxseg.artifacts.checkpoint import load_model, load_state, save_state, save_weights, unwrap
from ptxseg.config import Config, StageConfig, dump_config
from ptxseg.data.augment import check_pipeline
from ptxseg.data.manifest import dataset_domains, dataset_licences, read_dataset_info
from ptxseg.data.preprocess import Preprocessing
from ptxseg.data.split import fold_split
from ptxseg.errors import PtxsegError
from ptxseg.io.tensors import non_finite_tensors, read_tensors
from ptxseg.losses import SegmentationLoss, has_auto_pos_weight, resolve_auto_pos_weight
from ptxseg.measure.metrics import ImageStats, evaluate
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point
from ptxseg.models import create_model
from ptxseg.optim import Schedule, build_optimizer
from ptxseg.progress import err_console
from ptxseg.train import distributed as D
from ptxseg.train.data import SegmentationDataset, build_sampler, make_loader, unlabelled_ids
from ptxseg.train.epoch import EpochPlan, train_epoch
from ptxseg.train.freeze import freeze_batchnorm_of_frozen, set_encoder_trainable, trainable_fraction
from ptxseg.train.rundir import RunDir, environment
from ptxseg.train.selection import CheckpointPolicy, StageBook
from ptxseg.train.validation import Indexed, Validation, validate


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived; the state was saved and the run can be resumed."""


def _diverged(run_dir: Path, where: str, lr: float | None = None) -> PtxsegError:
    at_lr = "" if lr is None else f" (learning rate {lr:.3g})"
    return PtxsegError(
        "training",
        f"diverged: {where} is NaN or infinite{at_lr}; stopped without saving the broken weights — "
        f"the last good checkpoints and resume state stay in {run_dir}. Lower optimizer.lr or set training.clip_grad.",
        code="non_finite",
    )


@dataclass(kw_only=True)
class TrainResult:
    """What a run ended with. ``best_dice`` is the chosen epoch's validation Dice at the configured operating
    point; ``select_dice`` the Dice it was chosen by (``training.select_by``: at the epoch's tuned point, or the same
    as ``best_dice``)."""

    run_dir: Path
    best_dice: float
    best_epoch: int
    operating_point: dict[str, Any]
    tuned_dice: float
    epochs_run: int
    stop_reason: str
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    select_dice: float = float("nan")
    select_by: str = "fixed"


@dataclass(kw_only=True)
class StageParts:
    """What one stage trains with (built by :meth:`Trainer._build_stage`)."""

    pp: Preprocessing  # the stage's preprocessing contract (its validation loader's)
    model: torch.nn.Module
    ddp_model: torch.nn.Module  # the model, wrapped for DistributedDataParallel when several processes train
    train_ds: SegmentationDataset
    sampler: Any
    val_loader: Any
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    criterion: SegmentationLoss
    book: StageBook
    policy: CheckpointPolicy
    freezing: bool


class Trainer:
    """Runs a config on a dataset into a run directory; see :func:`train`."""

    def __init__(
        self,
        cfg: Config,
        dataset: str | PathLike[str],
        run_dir: str | PathLike[str],
        fold: int | None = None,
        minutes: float | None = None,
        resume: bool = False,
        quiet: bool = False,
        trackers: list | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dataset = Path(dataset)
        self.fold = cfg.data.fold if fold is None else fold
        self.minutes = minutes
        self.quiet = quiet
        self.on_epoch = on_epoch
        self.dist = D.init_distributed(cfg.training.device)
        self.trackers = (trackers or []) if self.dist.main else []
        if cfg.training.amp == "fp16" and self.dist.device.type != "cuda":
            raise PtxsegError("training.amp", "fp16 needs a CUDA device (GradScaler); use bf16 on the CPU")
        self.run = RunDir(run_dir, writer=self.dist.main)
        #: the parts of the stage trained last: its validation loader is reused to tune when the preprocessing matches
        self.last_parts: StageParts | None = None
        self.resume = resume
        self.stages = cfg.resolved_stages()
        select = cfg.training.select_by
        self.select_tuned = select == "tuned" or (select == "auto" and cfg.postprocess.tune)
        self._signal: str | None = None
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ helpers

    def _over_budget(self) -> bool:
        over = self.minutes is not None and time.monotonic() - self.t0 > self.minutes * 60
        return bool(D.broadcast(over, self.dist)) if self.dist.active else over

    def _install_signals(self) -> list:
        if threading.current_thread() is not threading.main_thread():
            return []
        previous = []

        def handler(signum, frame):  # noqa: ARG001
            self._signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous.append((sig, signal.signal(sig, handler)))
        return previous

    def preprocessing(self, stage: StageConfig) -> Preprocessing:
        """The preprocessing contract of ``stage``: the dataset's stored geometry, the config's crop, the stage's size
        and the normalisation — what the model card records and the predictor applies."""
        d = self.cfg.data
        return Preprocessing(
            apply_voi=self.stored.apply_voi,
            stored_size=self.stored.size,
            aspect=self.stored.aspect,
            crop=d.crop,
            size=stage.size,
            normalize=d.normalize,
            mean=d.mean,
            std=d.std,
        )

    def _card(self, stage: StageConfig, op: OperatingPoint, metrics: dict[str, Any], split) -> ModelCard:
        c = self.cfg
        return ModelCard(
            model=Architecture(
                name=c.model.name,
                encoder=c.model.encoder,
                aux_classifier=c.model.aux_classifier,
                kwargs=c.model.kwargs,
                encoder_weights=self.encoder_weights,
            ),
            preprocessing=self.preprocessing(stage),
            target=c.data.target,
            operating_point=op,
            tta=list(c.tta),
            recipe=c.name,
            training_data=TrainingData(
                dataset=str(self.dataset.resolve()),
                fold=self.fold,
                fingerprint=split.fingerprint,
                train_images=len(split.train_ids),
                val_images=len(split.val_ids),
                licences=self.licences,
                domains=self.domains,
            ),
            metrics=metrics,
            software=self.software,
        )

    def _op(self) -> OperatingPoint:
        return self.cfg.postprocess.point()

    # ------------------------------------------------------------------ state

    def _save_state(self, stage_idx: int, book: StageBook, model, optimizer, schedule, scaler) -> None:
        if not self.dist.main:
            return
        if non_finite_tensors(unwrap(model).state_dict()):  # never replace the last good resume state with a broken one
            raise _diverged(
                self.run.path, f"a weight after stage {stage_idx}, epoch {book.epoch + 1}, batch {book.batch}", schedule.lr
            )
        state = {
            "stage": stage_idx,
            "book": book.__dict__,
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "global_step": self.global_step,
        }
        save_state(self.run.path / "state", state)

    # ------------------------------------------------------------------ main

    def run_all(self) -> TrainResult:
        cfg = self.cfg
        self.stored = read_dataset_info(self.dataset)
        self.licences = dataset_licences(self.dataset)  # read once: every epoch's card names them
        self.domains = dataset_domains(self.dataset)
        env = environment()
        self.encoder_weights: dict[str, str] | None = None  # the first stage's pretrained origin (model card)
        self.software = {
            k: env[k] for k in ("ptxseg", "git", "python", "torch", "segmentation_models_pytorch", "timm", "albumentations")
        }
        if self.dist.main:  # rank 0 creates folds.csv when missing; the others read it after
            split = fold_split(self.dataset, self.fold, cfg.data.folds, cfg.data.split_seed)
        D.barrier(self.dist)
        if not self.dist.main:
            split = fold_split(self.dataset, self.fold, cfg.data.folds, cfg.data.split_seed, create=False)
        unknown = int((split.val_labels < 0).sum())
        if cfg.data.target == "pneumothorax" and unknown:
            raise PtxsegError(
                self.dataset, f"{unknown} images of fold {self.fold} have no pneumothorax annotation (a lungs-only dataset?)"
            )
        unlabelled = int((split.train_labels < 0).sum())  # folds.csv fold -1 (ptxseg split --unlabelled)
        if cfg.data.target == "pneumothorax" and unlabelled and not cfg.model.aux_classifier:
            raise PtxsegError(
                self.dataset,
                f"{unlabelled} unlabelled training films train only the classifier head: set model.aux_classifier: true",
            )
        if cfg.sampler.kind == "positive_share" and (split.train_labels == 1).sum() == 0:
            raise PtxsegError("sampler.kind", "positive_share needs positive training images; this fold has none")
        saved: dict[str, Any] | None = None
        if self.resume:
            saved = load_state(self.run.path / "state")
            book = StageBook(**saved["book"])
            done_stage, done_epoch = saved["stage"], book.epoch
            # epochs validated after the saved state are re-done: drop their records
            self.run.truncate_history(lambda r: (r["stage"], r["epoch"]) < (done_stage, done_epoch))
            self.run.log(f"resumed at stage {done_stage} epoch {done_epoch} batch {book.batch}")
        else:
            self.run.write_text("config.yaml", dump_config(cfg))
            self.run.write_json("env.json", env)
            self.run.write_json(
                "run.json",
                {
                    "dataset": str(self.dataset.resolve()),
                    "fold": self.fold,
                    "world_size": self.dist.world,
                    "train_images": len(split.train_ids),
                    "val_images": len(split.val_ids),
                },
            )
            if self.dist.main and self.run.metrics_path.exists():
                self.run.metrics_path.unlink()
        for t in self.trackers:
            t.start(cfg, self.run.path)
        self.global_step = int(saved["global_step"]) if saved else 0
        previous = self._install_signals()
        stop_reason = "completed"
        try:
            start_stage = saved["stage"] if saved else 0
            best_weights: Path | None = None
            for s_idx in range(len(self.stages)):
                if s_idx < start_stage:
                    best_weights = self.run.path / "checkpoints" / f"stage{s_idx}_best.safetensors"
                    continue
                stage_saved = saved if (saved and saved["stage"] == s_idx) else None
                stop_reason, best_weights = self._run_stage(s_idx, split, best_weights, stage_saved)
                if stop_reason in ("budget",):
                    break
            return self._finish(split, best_weights, stop_reason)
        finally:
            for sig, h in previous:
                signal.signal(sig, h)
            for t in self.trackers:
                t.end()
            self.run.close()

    def _build_stage(self, s_idx: int, split, init_weights: Path | None, saved: dict[str, Any] | None) -> StageParts:
        """Everything one stage trains with: model (from the previous stage's best, or the resume state), data,
        sampler, optimiser, schedule, scaler, criterion and the validation loader."""
        cfg, stage, d = self.cfg, self.stages[s_idx], self.dist
        torch.manual_seed(cfg.training.seed + s_idx)
        model = create_model(
            cfg.model.name,
            encoder=cfg.model.encoder,
            pretrained=cfg.model.pretrained,
            aux_classifier=cfg.model.aux_classifier,
            **cfg.model.kwargs,
        )
        self.encoder_weights = model.encoder_weights  # every stage builds from the same config: the same origin
        if init_weights is not None:
            model.load_state_dict(read_tensors(init_weights))
        model.to(d.device)
        if cfg.training.channels_last:
            model.to(memory_format=torch.channels_last)
        pp = self.preprocessing(stage)
        if cfg.augment:  # on the real (cropped) stored size, before any DataLoader worker starts
            check_pipeline(cfg.augment, pp.cropped_shape())
        target = cfg.data.target
        unlabelled = unlabelled_ids(split.train_ids, split.train_labels, target)
        train_ds = SegmentationDataset(
            self.dataset, split.train_ids, pp, target, cfg.augment, train=True, seed=cfg.training.seed, unlabelled=unlabelled
        )
        sampler = build_sampler(
            cfg, split.train_labels, stage.positive_share, cfg.training.seed + s_idx, d.world, d.rank, split.train_strata
        )
        val_loader = self._val_loader(split, pp)
        steps_per_epoch = math.ceil(len(sampler) / stage.batch_size / cfg.training.accum_steps)
        optimizer = build_optimizer(model.parameters(), cfg.optimizer, stage.lr)
        schedule = Schedule(optimizer, stage.scheduler, stage.epochs, steps_per_epoch)
        scaler = torch.amp.GradScaler(d.device.type, enabled=cfg.training.amp == "fp16")
        loss_spec = stage.loss
        if has_auto_pos_weight(loss_spec):
            loss_spec = resolve_auto_pos_weight(loss_spec, split.auto_pos_weight())
            self.run.log(f"pos_weight auto = {split.auto_pos_weight():.2f} (N_neg/N_pos pixels of the training masks)")
        criterion = SegmentationLoss(loss_spec, cfg.cls_weight)
        book = StageBook()
        if saved is not None:
            book = StageBook(**saved["book"])
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["torch_rng"])
        freezing = bool(stage.freeze_encoder_epochs or stage.unfreeze)
        ddp_model = model
        if d.active:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[d.device.index] if d.device.type == "cuda" else None, find_unused_parameters=freezing
            )
        policy = CheckpointPolicy(
            self.run.path / "checkpoints",
            s_idx,
            lambda path, meta: save_weights(path, model, meta),
            top_k=cfg.training.top_k,
            snapshots=cfg.training.snapshots,
            patience=cfg.training.early_stopping.patience,
            min_delta=cfg.training.early_stopping.min_delta,
            writer=d.main,
        )
        return StageParts(
            pp=pp,
            model=model,
            ddp_model=ddp_model,
            train_ds=train_ds,
            sampler=sampler,
            val_loader=val_loader,
            optimizer=optimizer,
            schedule=schedule,
            scaler=scaler,
            criterion=criterion,
            book=book,
            policy=policy,
            freezing=freezing,
        )

    def _val_loader(self, split, pp: Preprocessing):
        """This rank's share of the validation fold, indexed so the ranks' results can be gathered."""
        val_ds = Indexed(SegmentationDataset(self.dataset, split.val_ids, pp, self.cfg.data.target))
        mine = torch.utils.data.Subset(val_ds, list(range(self.dist.rank, len(val_ds), self.dist.world)))
        return make_loader(mine, self.cfg.training.val_batch_size, workers=self.cfg.data.workers)

    def _validate(self, model, loader, op: OperatingPoint, keep_probs: bool = False) -> Validation:
        t = self.cfg.training
        diverged = lambda where: _diverged(self.run.path, where)  # noqa: E731
        return validate(model, loader, op, self.dist, t.amp, t.channels_last, keep_probs, diverged)

    def _run_stage(self, s_idx: int, split, init_weights: Path | None, saved: dict[str, Any] | None) -> tuple[str, Path]:
        cfg, stage, d = self.cfg, self.stages[s_idx], self.dist
        parts = self._build_stage(s_idx, split, init_weights, saved)
        self.last_parts = parts
        model, book, schedule = parts.model, parts.book, parts.schedule
        op = self._op()
        stop_reason = "completed"
        self.run.log(
            f"stage {s_idx}: size {stage.size}, {stage.epochs} epochs, lr {stage.lr}, "
            f"{len(split.train_ids)} training / {len(split.val_ids)} validation images"
        )
        bs = stage.batch_size
        epoch_times: list[float] = []  # seconds per epoch (training + validation) of this stage, for the budget plan
        plan = EpochPlan(
            parts.optimizer,
            parts.criterion,
            parts.scaler,
            schedule.step_batch,
            cfg.training.accum_steps,
            cfg.training.clip_grad,
            cfg.training.amp,
            cfg.training.channels_last,
            d.device,
            parts.ddp_model.no_sync if d.active else None,
        )
        while book.epoch < stage.epochs and not book.done:
            epoch = book.epoch
            parts.sampler.set_epoch(epoch)
            parts.train_ds.set_epoch(epoch)
            parts.criterion.set_epoch(stage.loss_epoch_offset + epoch)  # run-wide for an inherited curriculum
            if book.batch:
                parts.sampler.skip(book.batch * bs)
            frozen = (
                set_encoder_trainable(model, trainable_fraction(epoch, stage.freeze_encoder_epochs, stage.unfreeze))
                if parts.freezing
                else 0
            )
            parts.ddp_model.train()
            freeze_batchnorm_of_frozen(model)
            loader = make_loader(parts.train_ds, bs, parts.sampler, cfg.data.workers, seed=cfg.training.seed * 1000 + epoch)
            t_epoch = time.monotonic() - book.seconds
            total_batches = book.batch + len(loader)
            bar = _Bar(f"stage {s_idx} epoch {epoch + 1}/{stage.epochs}", total_batches, book.batch, quiet=self.quiet or not d.main)

            def after_step(_steps: int, t_epoch=t_epoch, total_batches=total_batches) -> str | None:
                self.global_step += 1
                book.seconds = time.monotonic() - t_epoch
                every = cfg.training.checkpoint_every_steps
                stop_now = bool(D.broadcast(self._signal is not None, d)) if d.active else self._signal is not None
                if stop_now:
                    self._save_state(s_idx, book, model, parts.optimizer, schedule, parts.scaler)
                    return "signal"
                if every and self.global_step % every == 0 and book.batch < total_batches:
                    self._save_state(s_idx, book, model, parts.optimizer, schedule, parts.scaler)
                return "budget" if self._over_budget() else None

            try:
                outcome = train_epoch(
                    parts.ddp_model,
                    loader,
                    total_batches,
                    plan,
                    book,  # the epoch's progress lives in the stage book, so the resume state always holds it
                    after_step,
                    bar.update,
                    where=lambda b, epoch=epoch: f"stage {s_idx}, epoch {epoch + 1}, batch {b}",
                    diverged=lambda where: _diverged(self.run.path, where, schedule.lr),
                )
            finally:
                bar.close()
            if outcome.stopped == "signal":
                raise TrainingInterrupted(f"{self._signal}: state saved at stage {s_idx}, epoch {epoch + 1}, batch {book.batch}")
            budget_hit = outcome.stopped == "budget"
            seconds = time.monotonic() - t_epoch
            metrics = self._validate(parts.ddp_model, parts.val_loader, op).record()
            metrics["val_select"] = chosen = metrics["val_dice_tuned" if self.select_tuned else "val_dice"]
            metrics["select_by"] = "tuned" if self.select_tuned else "fixed"
            cycle_end = schedule.step_epoch(epoch, chosen)
            if self.minutes is not None and not budget_hit:
                # fit a cosine decay to the epochs the budget still allows, measured on the epoch just done
                spent = time.monotonic() - self.t0
                epoch_times.append(time.monotonic() - t_epoch)
                per_epoch = sum(epoch_times) / len(epoch_times)  # the mean: one slow epoch does not cut the plan short
                fit = epoch + 1 + int(max(0.0, self.minutes * 60 - spent) // max(per_epoch, 1e-9))
                if fit < stage.epochs and schedule.fit_to(fit):
                    self.run.log(f"the budget allows about {fit} of {stage.epochs} epochs: cosine schedule fitted to {fit}")
            record = {
                "stage": s_idx,
                "epoch": epoch,
                "size": stage.size,
                "lr": schedule.lr,
                "train_loss": book.loss_sum / max(book.batch, 1),
                **metrics,
                "images_per_s": book.seen * d.world / max(seconds, 1e-9),
                "seconds": seconds,
                "frozen_blocks": frozen,
                "partial": budget_hit,
            }
            keep = ("val_dice", "val_dice_pos", "val_empty_correct", "val_loss", "val_dice_tuned", "val_select")
            meta = self._card(stage, op, {k: record[k] for k in keep} | {"epoch": epoch, "stage": s_idx}, split)
            verdict = parts.policy.after_epoch(book, epoch, chosen, cycle_end, meta)
            record["best"] = verdict.best
            self.run.append_metrics(record)
            for t in self.trackers:
                t.log_metrics(record, self.global_step)
            if self.on_epoch and d.main:
                self.on_epoch(record)
            self.run.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            book.epoch, book.batch, book.loss_sum, book.seen, book.seconds = epoch + 1, 0, 0.0, 0, 0.0
            if budget_hit:
                stop_reason = "budget"  # not `done`: a resumed run goes on with the next epoch
            elif verdict.stop:
                stop_reason, book.done = "early_stopping", True
                self.run.log(f"early stopping: no improvement for {cfg.training.early_stopping.patience} epochs")
            self._save_state(s_idx, book, model, parts.optimizer, schedule, parts.scaler)
            if budget_hit:
                break
        if book.done and stop_reason == "completed":
            stop_reason = "early_stopping"
        return stop_reason, parts.policy.best_path

    def _finish(self, split, best_weights: Path | None, stop_reason: str) -> TrainResult:
        """Tune the operating point with the final best weights and write ``best.safetensors``."""
        hist = self.run.history() if self.dist.main else []
        if best_weights is None or not Path(best_weights).is_file():
            raise PtxsegError(self.run.path, "no epoch was completed: nothing to save (raise --minutes?)")
        model, card = load_model(best_weights, self.dist.device)
        parts = self.last_parts
        same = parts is not None and parts.pp == card.preprocessing
        loader = parts.val_loader if same else self._val_loader(split, card.preprocessing)
        op = self._op()
        checked = self._validate(model, loader, op, keep_probs=True)
        probs, truths, heads = checked.probs, checked.truths, checked.heads
        tuned_dice = float(checked.dice.mean())
        if self.cfg.postprocess.tune:
            # threshold × minimum mask (× classifier gate when there is a head); ptxseg tune searches the full grid
            op, tuned_dice = checked.tuned_point, checked.tuned_dice
        # validation numbers at the chosen operating point, with bootstrap 95 % intervals, for the card
        masks = apply_operating_point(probs.astype(np.float32), op, heads)
        scores = heads if heads is not None else probs.reshape(len(probs), -1).max(1).astype(np.float64)
        at_point = evaluate(ImageStats.of(masks, truths, score=list(map(float, scores))), n_boot=1000, seed=0)
        keep = ("mean_dice", "dice_positive", "empty_correct", "case_sensitivity", "case_specificity", "auroc", "images", "positives")
        validation = {k: at_point[k] for k in keep if k in at_point}
        validation["ci95"] = {k: v for k, v in at_point.get("ci95", {}).items() if k in keep}
        card = card.model_copy(
            update={
                "operating_point": op,
                "metrics": card.metrics
                | {"val_dice_tuned": tuned_dice, "tuned_at_size": int(probs.shape[-1]), "validation_at_operating_point": validation},
            }
        )
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


class _Bar:
    """A rich progress bar over an epoch's batches with the running loss (nothing when quiet)."""

    def __init__(self, description: str, total: int, done: int, quiet: bool) -> None:
        self.progress = None
        if quiet:
            return

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=done, loss="-")

    def update(self, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=f"{loss:.4f}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def train(
    cfg: Config,
    dataset: str | PathLike[str],
    run_dir: str | PathLike[str],
    fold: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    quiet: bool = False,
    trackers: list | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` on the canonical dataset ``dataset`` into ``run_dir``.

    Args:
        fold: validation fold (default: ``cfg.data.fold``).
        minutes: wall-clock budget; training stops after the step in progress
            once it is spent, validates, and keeps the best checkpoint.
        resume: continue the run saved in ``run_dir`` (its own config is used).
        on_epoch: called with each epoch's record on rank 0.

    Raises:
        TrainingInterrupted: on SIGTERM/SIGINT, after saving the resume state.
        PtxsegError: bad dataset, fold or config values.
    """
    trainer = Trainer(cfg, dataset, run_dir, fold, minutes, resume, quiet, trackers, on_epoch)
    try:
        return trainer.run_all()
    finally:
        D.shutdown(trainer.dist)
