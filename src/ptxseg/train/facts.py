"""What a run records about itself in every checkpoint's model card: the dataset's stored geometry, licences and
domains, the fold's split, the software, and the encoder's pretrained origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptxseg.artifacts.card import Architecture, ModelCard, TrainingData
from ptxseg.config import Config, StageConfig
from ptxseg.data.manifest import StoredGeometry, dataset_domains, dataset_licences, read_dataset_info
from ptxseg.data.preprocess import Preprocessing
from ptxseg.data.split import FoldSplit
from ptxseg.measure.operating_point import OperatingPoint
from ptxseg.train.rundir import environment

_SOFTWARE = ("ptxseg", "git", "python", "torch", "segmentation_models_pytorch", "timm", "albumentations")


@dataclass(kw_only=True)
class RunFacts:
    """Read once when a run starts (every epoch's card names them); ``encoder_weights`` is filled by the first
    stage's model (every stage builds from the same config: the same origin)."""

    cfg: Config
    dataset: Path
    fold: int
    stored: StoredGeometry
    licences: dict[str, int] | None
    domains: dict[str, int] | None
    env: dict[str, Any]
    encoder_weights: dict[str, str] | None = None
    software: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.software = {k: self.env[k] for k in _SOFTWARE}

    @classmethod
    def read(cls, cfg: Config, dataset: Path, fold: int) -> RunFacts:
        """The facts of training ``cfg`` on ``dataset``'s fold ``fold``; raises PtxsegError for a bad dataset."""
        return cls(
            cfg=cfg,
            dataset=dataset,
            fold=fold,
            stored=read_dataset_info(dataset),
            licences=dataset_licences(dataset),
            domains=dataset_domains(dataset),
            env=environment(),
        )

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

    def card(self, stage: StageConfig, op: OperatingPoint, metrics: dict[str, Any], split: FoldSplit) -> ModelCard:
        """The model card of a checkpoint taken in ``stage`` with validation ``metrics``."""
        m = self.cfg.model
        return ModelCard(
            model=Architecture(
                name=m.name, encoder=m.encoder, aux_classifier=m.aux_classifier, kwargs=m.kwargs, encoder_weights=self.encoder_weights
            ),
            preprocessing=self.preprocessing(stage),
            target=self.cfg.data.target,
            operating_point=op,
            tta=list(self.cfg.tta),
            recipe=self.cfg.name,
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
