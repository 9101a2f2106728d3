"""The model card: everything needed to rebuild, apply and judge a trained model, typed and versioned.

``best.json`` beside ``best.safetensors`` (and ``model.json`` in a bundle) is a :class:`ModelCard` —
architecture, the :class:`~ptxseg.data.preprocess.Preprocessing` contract, target, operating point (with the
classifier gate), TTA, training data, metrics with confidence intervals, tuning record and software versions.
It is written in one place (:func:`write_card`) and read in one place (:func:`read_card`); an unknown or
missing field, a wrong type or a non-finite number is one :class:`PtxsegError` naming the file.

Cards of format ``ptxseg-checkpoint/1`` (before the preprocessing contract) did not record how the training
images were fitted into the network square. They are upgraded on reading from their training dataset's stored
geometry when that dataset is still there, and refused with one line when it is not — never silently stretched.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ptxseg.data.manifest import dataset_domains, read_dataset_info
from ptxseg.data.preprocess import CropSpec, Preprocessing
from ptxseg.errors import PtxsegError
from ptxseg.infer.tta import TTA_TRANSFORMS
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, read_json
from ptxseg.measure.operating_point import OperatingPoint, point_field

FORMAT = "ptxseg-model-card/2"
LEGACY_FORMAT = "ptxseg-checkpoint/1"

#: test-time augmentations a model may be applied with (implemented in :mod:`ptxseg.infer.predictor`)
#: a registered test-time augmentation name (ptxseg.infer.tta)
TTA = TTA_TRANSFORMS.field()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


class Architecture(_Strict):
    """What :func:`ptxseg.models.create_model` builds."""

    name: str
    encoder: str | None = None
    aux_classifier: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)
    in_channels: int = Field(1, ge=1, le=4)
    classes: int = Field(1, ge=1, le=16)
    encoder_weights: dict[str, str] | None = None  # origin of pretrained encoder weights (source, sha256, licence)


class TrainingData(_Strict):
    """The data a model was trained and validated on."""

    dataset: str | None = None
    fold: int | None = None
    fingerprint: str | None = None
    train_images: int | None = None
    val_images: int | None = None
    licences: dict[str, int] | None = None  # the dataset manifest's ``licence`` values → images under each
    domains: dict[str, int] | None = None  # phantom / inserted_lesions / real / unstated → training-set images


class LungModelRef(_Strict):
    """The lung-field model a pneumothorax model is deployed with (set by ``ptxseg export``)."""

    path: str  # relative to the card's bundle (``lungs``)
    name: str
    version: str
    precision: str = "fp32"


class ModelCard(_Strict):
    """A trained model's card (see the module docstring). ``metrics`` holds validation numbers, with ``ci95``
    bootstrap intervals where computed; ``tuning`` is ``ptxseg tune``'s record; ``lung_model`` the lung-field
    model of a bundle; ``software`` the versions."""

    format: Literal["ptxseg-model-card/2"] = FORMAT
    model: Architecture
    preprocessing: Preprocessing
    target: Literal["pneumothorax", "lungs"] = "pneumothorax"
    operating_point: OperatingPoint = Field(default_factory=OperatingPoint)
    tta: list[TTA] = Field(default_factory=lambda: ["identity"])
    recipe: str | None = None
    training_data: TrainingData | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    lung_model: LungModelRef | None = None
    software: dict[str, Any] = Field(default_factory=dict)

    @field_validator("operating_point", mode="before")
    @classmethod
    def _point(cls, value: Any) -> OperatingPoint:
        return point_field(value)

    @field_validator("tta")
    @classmethod
    def _tta(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"needs at least one transform and no repeats, got {value}")
        return value

    def to_json(self) -> str:
        """Standard JSON (the operating point as a plain mapping)."""

        return dumps(self.model_dump(mode="json"), indent=2)


#: training domains that are not patients' radiographs with real findings
SYNTHETIC_DOMAINS = {"phantom": "synthetic phantoms", "inserted_lesions": "real radiographs with inserted synthetic lesions"}


def training_domains(card: ModelCard) -> dict[str, int] | None:
    """What the model was trained on (domain → images): the card's record, else — for cards written before it —
    its training dataset's manifest when that dataset is still there; None when unknown."""
    data = card.training_data
    if data is None:
        return None
    if data.domains is not None:
        return data.domains
    return dataset_domains(data.dataset) if data.dataset else None


def synthetic_warning(card: ModelCard) -> str | None:
    """One sentence for every output of a model trained (partly) on synthetic data, naming what it saw; None for a
    model trained on real radiographs only, or whose training domain is unknown."""
    domains = training_domains(card) or {}
    synthetic = {d: n for d, n in domains.items() if d in SYNTHETIC_DOMAINS and n > 0}
    if not synthetic:
        return None
    total = sum(domains.values())
    seen = " and ".join(f"{n} of {total} images {SYNTHETIC_DOMAINS[d]}" for d, n in synthetic.items())
    return (
        f"the {card.target} model was trained on synthetic data ({seen}): "
        "its answers on patients' radiographs are not validated and mean nothing clinically"
    )


def _problems(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "card"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return "; ".join(dict.fromkeys(out))


def parse_card(doc: object, where: str | PathLike[str]) -> ModelCard:
    """A card from its JSON mapping (upgrading format 1, see the module docstring)."""
    if not isinstance(doc, dict):
        raise PtxsegError(where, "a model card must be a JSON object", code="bad_model")
    if doc.get("format") == LEGACY_FORMAT:
        doc = _upgrade(doc, where)
    elif doc.get("format") != FORMAT:
        raise PtxsegError(
            where, f"not a ptxseg model card (format {str(doc.get('format'))[:40]!r}, expected {FORMAT!r})", code="bad_model"
        )
    try:
        return ModelCard.model_validate(doc)
    except ValidationError as exc:
        raise PtxsegError(where, f"invalid model card: {_problems(exc)}", code="bad_model") from None


def _upgrade(doc: dict[str, Any], where: str | PathLike[str]) -> dict[str, Any]:
    """A format-1 card as format 2, its stored geometry read from its training dataset (or refused)."""

    inp = doc.get("input")
    if not isinstance(inp, dict):
        raise PtxsegError(where, "invalid model card: input: Field required", code="bad_model")
    trained = doc.get("training_data") or {}
    dataset = trained.get("dataset") if isinstance(trained, dict) else None
    if not isinstance(dataset, str) or not (Path(dataset) / "manifest.csv").is_file():
        raise PtxsegError(
            where,
            f"model card format 1 does not record how the training images were fitted into the network square, and its "
            f"training dataset {dataset!r} is not available to tell: restore that dataset, or retrain with this ptxseg version",
            code="legacy_card",
        )
    stored = read_dataset_info(dataset)
    try:
        preprocessing = Preprocessing(
            apply_voi=stored.apply_voi,
            stored_size=stored.size,
            aspect=stored.aspect,
            crop=CropSpec(**inp["crop"]) if inp.get("crop") else None,
            size=inp["size"],
            normalize=inp.get("normalize", "minmax"),
            mean=inp.get("mean", 0.5),
            std=inp.get("std", 0.5),
        )
    except (ValidationError, KeyError, TypeError) as exc:
        reason = _problems(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
        raise PtxsegError(where, f"invalid model card (format 1): input: {reason}", code="bad_model") from None
    known = {"model", "target", "operating_point", "tta", "recipe", "metrics", "tuning"}
    upgraded = {k: v for k, v in doc.items() if k in known}
    upgraded["model"] = {k: v for k, v in (doc.get("model") or {}).items() if k in Architecture.model_fields}
    upgraded.update(
        format=FORMAT,
        preprocessing=preprocessing.model_dump(mode="json"),
        training_data={k: v for k, v in trained.items() if k in TrainingData.model_fields},
        software={"upgraded_from": LEGACY_FORMAT},
    )
    return upgraded


def read_card(path: str | PathLike[str]) -> ModelCard:
    """Read and validate a model card file (``best.json``, ``model.json``)."""

    return parse_card(read_json(path), path)


def write_card(path: str | PathLike[str], card: ModelCard) -> Path:
    """Write a model card atomically (standard JSON)."""

    write_text_atomic(path, card.to_json())
    return Path(path)
