"""Ensemble files: several models, their weights, TTA and one operating point, usable wherever a model is.

``ptxseg tune MODEL MODEL ... --out ensemble.json`` writes one after tuning the
ensemble's operating point; ``ptxseg evaluate|report|submit --model
ensemble.json`` (and :class:`ptxseg.infer.predictor.Predictor`) load it. Members are
run directories, bundles or ``.safetensors`` files, stored relative to the
ensemble file when they lie below its folder so the pair can be moved together.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, read_json
from ptxseg.measure.operating_point import OperatingPoint

FORMAT = "ptxseg-ensemble/1"


@dataclass
class Ensemble:
    """Members (paths), their non-negative weights, the TTA list and the tuned operating point (a dict)."""

    members: list[Path]
    weights: list[float]
    tta: list[str]
    operating_point: dict[str, Any]
    tuning: dict[str, Any] | None = field(default=None)


def is_ensemble_file(path: str | PathLike[str]) -> bool:
    """Whether ``path`` names an ensemble JSON (by suffix; the content is checked by :func:`read_ensemble`)."""
    return Path(path).suffix == ".json"


def read_ensemble(path: str | PathLike[str]) -> Ensemble:
    """Load an ensemble file; member paths come back resolved against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise PtxsegError(path, "no such ensemble file")
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PtxsegError(path, f"not a ptxseg ensemble file (expected format {FORMAT!r})")
    try:
        members = [path.parent / m for m in doc["members"] if isinstance(m, str)]
        weights = [float(w) for w in doc["weights"] if not isinstance(w, bool)]
        ens = Ensemble(members, weights, list(doc["tta"]), dict(doc["operating_point"]), doc.get("tuning"))
    except (KeyError, TypeError, ValueError) as exc:
        raise PtxsegError(path, f"malformed ensemble file ({type(exc).__name__}: {exc})") from None
    if not ens.members or len(ens.members) != len(doc["members"]) or len(ens.weights) != len(ens.members):
        raise PtxsegError(path, "needs one weight per member, at least one member, and member paths as strings")
    if not all(math.isfinite(w) and w >= 0 for w in ens.weights) or sum(ens.weights) <= 0:
        raise PtxsegError(path, f"ensemble weights must be finite, non-negative and not all zero, got {ens.weights}")
    OperatingPoint.from_dict(ens.operating_point, str(path))
    return ens


def write_ensemble(path: str | PathLike[str], ens: Ensemble) -> Path:
    """Write an ensemble file atomically (members relative to its folder when below it)."""
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        p = Path(p).resolve()
        return os.path.relpath(p, base) if p.is_relative_to(base) else str(p)

    doc = {"format": FORMAT, **asdict(ens), "members": [rel(m) for m in ens.members]}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dumps(doc, indent=2))
    return path
