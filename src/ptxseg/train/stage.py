"""What one training stage trains with — model, data, sampler, optimiser, schedule, scaler, loss, checkpoint
policy and the validation loader — built from the config, the previous stage's best weights or the resume state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptxseg.artifacts.checkpoint import save_weights
from ptxseg.config import Config, StageConfig
from ptxseg.data.augment import check_pipeline
from ptxseg.data.preprocess import Preprocessing
from ptxseg.data.split import FoldSplit
from ptxseg.io.tensors import read_tensors
from ptxseg.losses import SegmentationLoss, has_auto_pos_weight, resolve_auto_pos_weight
from ptxseg.models import create_model
from ptxseg.optim import Schedule, build_optimizer
from ptxseg.train import distributed as D
from ptxseg.train.data import SegmentationDataset, build_sampler, make_loader, unlabelled_ids
from ptxseg.train.epoch import EpochPlan
from ptxseg.train.facts import RunFacts
from ptxseg.train.freeze import freeze_batchnorm_of_frozen, set_encoder_trainable, trainable_fraction
from ptxseg.train.rundir import RunDir
from ptxseg.train.selection import CheckpointPolicy, StageBook
from ptxseg.train.validation import Indexed


@dataclass(kw_only=True)
class StageParts:
    """What one stage trains with (built by :func:`build_stage`)."""

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

    def epoch_plan(self, cfg: Config, dist: D.Dist) -> EpochPlan:
        """How :func:`~ptxseg.train.epoch.train_epoch` trains this stage's batches."""
        t = cfg.training
        return EpochPlan(
            self.optimizer,
            self.criterion,
            self.scaler,
            self.schedule.step_batch,
            t.accum_steps,
            t.clip_grad,
            t.amp,
            t.channels_last,
            dist.device,
            self.ddp_model.no_sync if dist.active else None,
        )

    def start_epoch(self, stage: StageConfig) -> int:
        """Set sampler, dataset and loss to the book's epoch (skipping the batches a resume has done) and freeze the
        encoder as ``stage`` says; returns the number of frozen encoder blocks."""
        epoch = self.book.epoch
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        self.criterion.set_epoch(stage.loss_epoch_offset + epoch)  # run-wide for an inherited curriculum
        if self.book.batch:
            self.sampler.skip(self.book.batch * stage.batch_size)
        frozen = 0
        if self.freezing:
            frozen = set_encoder_trainable(self.model, trainable_fraction(epoch, stage.freeze_encoder_epochs, stage.unfreeze))
        self.ddp_model.train()
        freeze_batchnorm_of_frozen(self.model)
        return frozen


def validation_loader(cfg: Config, dataset: Path, split: FoldSplit, pp: Preprocessing, dist: D.Dist):
    """This rank's share of the validation fold, indexed so the ranks' results can be gathered."""
    val_ds = Indexed(SegmentationDataset(dataset, split.val_ids, pp, cfg.data.target))
    mine = torch.utils.data.Subset(val_ds, list(range(dist.rank, len(val_ds), dist.world)))
    return make_loader(mine, cfg.training.val_batch_size, workers=cfg.data.workers)


def _stage_model(cfg: Config, facts: RunFacts, init_weights: Path | None, device: torch.device) -> torch.nn.Module:
    m = cfg.model
    model = create_model(m.name, encoder=m.encoder, pretrained=m.pretrained, aux_classifier=m.aux_classifier, **m.kwargs)
    facts.encoder_weights = model.encoder_weights
    if init_weights is not None:
        model.load_state_dict(read_tensors(init_weights))
    model.to(device)
    if cfg.training.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _stage_loss(cfg: Config, s_idx: int, split: FoldSplit, run: RunDir) -> SegmentationLoss:
    spec = cfg.resolved_stages()[s_idx].loss
    if has_auto_pos_weight(spec):
        spec = resolve_auto_pos_weight(spec, split.auto_pos_weight())
        run.log(f"pos_weight auto = {split.auto_pos_weight():.2f} (N_neg/N_pos pixels of the training masks)")
    return SegmentationLoss(spec, cfg.cls_weight)


def build_stage(
    *,
    cfg: Config,
    s_idx: int,
    facts: RunFacts,
    dist: D.Dist,
    run: RunDir,
    split: FoldSplit,
    init_weights: Path | None,
    saved: dict[str, Any] | None,
) -> StageParts:
    """Stage ``s_idx``'s parts, starting from ``init_weights`` (the previous stage's best) or, when ``saved`` is
    the resume state of this stage, from where it stopped."""
    stage = cfg.resolved_stages()[s_idx]
    torch.manual_seed(cfg.training.seed + s_idx)
    model = _stage_model(cfg, facts, init_weights, dist.device)
    pp = facts.preprocessing(stage)
    if cfg.augment:  # on the real (cropped) stored size, before any DataLoader worker starts
        check_pipeline(cfg.augment, pp.cropped_shape())
    unlabelled = unlabelled_ids(split.train_ids, split.train_labels, cfg.data.target)
    train_ds = SegmentationDataset(
        facts.dataset, split.train_ids, pp, cfg.data.target, cfg.augment, train=True, seed=cfg.training.seed, unlabelled=unlabelled
    )
    sampler = build_sampler(
        cfg, split.train_labels, stage.positive_share, cfg.training.seed + s_idx, dist.world, dist.rank, split.train_strata
    )
    steps_per_epoch = math.ceil(len(sampler) / stage.batch_size / cfg.training.accum_steps)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, stage.lr)
    schedule = Schedule(optimizer, stage.scheduler, stage.epochs, steps_per_epoch)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=cfg.training.amp == "fp16")
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
    if dist.active:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=freezing)
    t = cfg.training
    policy = CheckpointPolicy(
        run.path / "checkpoints",
        s_idx,
        lambda path, meta: save_weights(path, model, meta),
        top_k=t.top_k,
        snapshots=t.snapshots,
        patience=t.early_stopping.patience,
        min_delta=t.early_stopping.min_delta,
        writer=dist.main,
    )
    return StageParts(
        pp=pp,
        model=model,
        ddp_model=ddp_model,
        train_ds=train_ds,
        sampler=sampler,
        val_loader=validation_loader(cfg, facts.dataset, split, pp, dist),
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        criterion=_stage_loss(cfg, s_idx, split, run),
        book=book,
        policy=policy,
        freezing=freezing,
    )
