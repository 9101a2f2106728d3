"""Deployable bundles: ONNX models, their model cards and a manifest of sha256 hashes, in one folder.

``ptxseg export`` writes a bundle; :class:`ptxseg.infer.predictor.Predictor` (and so ``predict``, ``evaluate``,
``report``, ``submit``) runs one with ONNX Runtime wherever a run directory is accepted::

    BUNDLE/
      bundle.json        the manifest (below)
      member-0.onnx      segmentation logits (and the classifier head's logit, output ``cls``, when the model has one)
      member-0.json      the member's model card (ptxseg.artifacts.card.ModelCard: preprocessing, operating point …)
      MODEL_CARD.md      data, metrics with CIs, intended use, limits — for people
      lungs/             optional: the lung-field model, a bundle of its own

``bundle.json`` holds the members (file names, ensemble weights), the TTA and the operating point to apply, the
precision (``fp32`` or ``int8``) with the INT8 calibration and the measured Dice of both precisions, the
ONNX-vs-PyTorch verification, and the sha256 of every file. A bundle whose file does not match its hash is
refused: it was altered or damaged.
"""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ptxseg.artifacts.card import TTA, ModelCard, read_card
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, read_json
from ptxseg.io.names import is_safe_name, under
from ptxseg.measure.operating_point import OperatingPoint, point_field

FORMAT = "ptxseg-bundle/1"
MANIFEST = "bundle.json"


class BundleMember(BaseModel):
    """One model of a bundle: its ONNX file, its card and its ensemble weight."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    onnx: str
    card: str
    weight: float = Field(1.0, ge=0)
    outputs: list[Literal["logits", "cls"]] = Field(default_factory=lambda: ["logits"])

    @field_validator("onnx", "card")
    @classmethod
    def _safe(cls, value: str) -> str:
        if not is_safe_name(value):
            raise ValueError(f"{value[:40]!r} is not a safe file name")
        return value


class BundleManifest(BaseModel):
    """``bundle.json`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["ptxseg-bundle/1"] = FORMAT
    members: list[BundleMember] = Field(min_length=1)
    tta: list[TTA]
    operating_point: OperatingPoint
    precision: Literal["fp32", "int8"] = "fp32"
    quantization: dict[str, Any] | None = None
    verification: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    software: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)

    @field_validator("operating_point", mode="before")
    @classmethod
    def _point(cls, value: Any) -> OperatingPoint:
        return point_field(value)


def is_bundle(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is a bundle folder (holds ``bundle.json``)."""
    return (Path(path) / MANIFEST).is_file()


def sha256_file(path: str | PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_names(folder: Path) -> list[str]:
    """Every file of a bundle but its own manifest, as POSIX paths relative to the folder (nested bundles included)."""
    top = folder / MANIFEST
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p != top and ".tmp" not in p.name)


def write_manifest(folder: str | PathLike[str], manifest: BundleManifest) -> Path:
    """Hash every file of ``folder`` (nested bundles' manifests included) into ``manifest.files`` and write it."""

    folder = Path(folder)
    files = {name: sha256_file(folder / name) for name in _file_names(folder)}
    done = manifest.model_copy(update={"files": files})
    write_text_atomic(folder / MANIFEST, dumps(done.model_dump(mode="json"), indent=2))
    return folder / MANIFEST


def read_bundle(folder: str | PathLike[str], verify: bool = True) -> tuple[BundleManifest, list[ModelCard]]:
    """The manifest and member cards of a bundle, every file checked against its sha256 (``verify``).

    Raises:
        PtxsegError: a malformed manifest, a member file missing from it or from the folder, or a file whose
            bytes do not match the recorded hash.
    """

    folder = Path(folder)
    path = folder / MANIFEST
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PtxsegError(path, f"not a ptxseg bundle manifest (expected format {FORMAT!r})", code="bad_bundle")
    try:
        manifest = BundleManifest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors())
        raise PtxsegError(path, f"invalid bundle manifest: {problems}", code="bad_bundle") from None
    if verify:
        for name, digest in manifest.files.items():
            file = under(folder, *name.split("/"))
            if not file.is_file():
                raise PtxsegError(file, "listed in bundle.json but missing: the bundle is incomplete", code="bad_bundle")
            if sha256_file(file) != digest:
                raise PtxsegError(
                    file, "does not match the sha256 recorded in bundle.json: the bundle was altered or damaged", code="bad_bundle"
                )
        for member in manifest.members:
            for name in (member.onnx, member.card):
                if name not in manifest.files:
                    raise PtxsegError(folder / name, "is not covered by the hashes of bundle.json", code="bad_bundle")
    cards = [read_card(under(folder, m.card)) for m in manifest.members]
    return manifest, cards
