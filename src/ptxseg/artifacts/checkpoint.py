"""Checkpoints as safetensors + JSON, never pickle.

* Model weights: ``NAME.safetensors`` (the state dict) beside ``NAME.json``
  (architecture, encoder, input size, normalisation, operating point, training
  data fingerprint, metrics). :func:`load_model` rebuilds the model from the
  JSON through the registry and loads the tensors strictly.
* Training state for ``--resume``: any nest of dicts/lists/scalars/tensors
  (optimiser, scheduler, scaler, RNG states …) is split into a safetensors
  file of its tensors and a JSON skeleton that names them
  (:func:`save_state` / :func:`load_state`). A new tensors file is written
  under a fresh name before the JSON that points to it, so a kill at any
  moment leaves a consistent pair.
"""

from __future__ import annotations

import math
import uuid
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptxseg.artifacts.card import ModelCard, read_card, write_card
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, read_json_object
from ptxseg.io.names import is_safe_name
from ptxseg.io.tensors import non_finite_tensors, read_tensors, write_tensors
from ptxseg.models import create_model

FORMAT = "ptxseg-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_weights(path: str | PathLike[str], model: nn.Module, card: ModelCard) -> Path:
    """Write ``path`` (``.safetensors``) and its model card (``.json``) atomically; return the weights path.

    Raises:
        PtxsegError: when a weight is NaN or infinite — a broken model is never saved (the previous file stays).
    """
    path = Path(path).with_suffix(".safetensors")
    state = unwrap(model).state_dict()
    bad = non_finite_tensors(state)
    if bad:
        raise PtxsegError(path, f"not saved: {len(bad)} weight tensors are not finite (first: {bad[0]})", code="non_finite")
    write_tensors(path, state, metadata={"format": FORMAT})
    write_card(path.with_suffix(".json"), card)
    return path


def read_model_card(path: str | PathLike[str]) -> ModelCard:
    """The model card beside a weights file (or of a run/bundle directory), validated (see :mod:`ptxseg.artifacts.card`)."""
    weights = resolve_weights(path) if Path(path).is_dir() else Path(path)
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        raise PtxsegError(weights, "no model card beside the weights (expected " + card_path.name + ")")
    return read_card(card_path)


def resolve_weights(path: str | PathLike[str]) -> Path:
    """A run directory (its ``best.safetensors``), a bundle directory (``model.safetensors``) or a weights file."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.safetensors", "model.safetensors"):
            if (p / name).is_file():
                return p / name
        raise PtxsegError(p, "no best.safetensors or model.safetensors in this directory (did training finish an epoch?)")
    if not p.exists():  # a typo reads as a typo, whatever its suffix
        raise PtxsegError(p, "no such file or directory")
    if p.suffix != ".safetensors":
        raise PtxsegError(p, "weights must be a .safetensors file or a run directory (pickled checkpoints are not loaded)")
    if not p.is_file():
        raise PtxsegError(p, "no such weights file")
    return p


def load_model(path: str | PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model in eval mode from its card and weights.

    Raises:
        PtxsegError: for a card that is missing, malformed or out of range, weights that are truncated,
            do not fit the architecture, or hold a NaN or infinity — never a model that would answer
            "no pneumothorax" because it is broken.
    """
    weights = resolve_weights(path)
    card = read_model_card(weights)
    m = card.model
    model = create_model(m.name, encoder=m.encoder, aux_classifier=m.aux_classifier, **m.kwargs)
    state = read_tensors(weights, device)
    bad = non_finite_tensors(state)
    if bad:
        raise PtxsegError(
            weights, f"{len(bad)} weight tensors hold NaN or infinity (first: {bad[0]}): a broken model", code="non_finite"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, OSError) as exc:
        raise PtxsegError(weights, f"weights do not fit {m.name}/{m.encoder}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), card


# ----------------------------------------------------------------------------- training state


def _split(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if any(not isinstance(k, str | int) for k in obj):
            raise TypeError(f"{prefix}: only str/int keys can be stored")
        return {"__dict__": [[k, _split(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"__list__": [_split(v, tensors, f"{prefix}[{i}]") for i, v in enumerate(obj)], "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}  # "inf", "-inf", "nan": a scheduler's best-so-far may be ±inf; JSON has no token
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{prefix}: cannot store a {type(obj).__name__} in a training state")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__float__" in obj:
            if obj["__float__"] not in ("inf", "-inf", "nan"):
                raise ValueError(f"bad float {str(obj['__float__'])[:20]!r}")
            return float(obj["__float__"])
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_state(directory: str | PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``directory/state.json`` + a fresh ``state-*.safetensors``; older tensor files are removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "state")
    name = f"state-{uuid.uuid4().hex[:12]}.safetensors"
    write_tensors(directory / name, tensors)
    write_text_atomic(directory / "state.json", dumps({"format": FORMAT, "tensors": name, "state": skeleton}))
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_state(directory: str | PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_state` wrote."""
    directory = Path(directory)
    index = directory / "state.json"
    if not index.is_file():
        raise PtxsegError(directory, "no saved training state (state.json) to resume from")
    doc = read_json_object(index)
    if doc.get("format") != FORMAT:
        raise PtxsegError(index, f"not a ptxseg training state (format {doc.get('format')!r})")
    tensors_name = doc.get("tensors")
    if not (is_safe_name(tensors_name) and tensors_name.startswith("state-") and tensors_name.endswith(".safetensors")):
        raise PtxsegError(index, f"names no valid tensors file ({str(tensors_name)[:60]!r})", code="corrupt")
    tensors_path = directory / tensors_name
    if not tensors_path.is_file():
        raise PtxsegError(tensors_path, "missing: the saved training state is incomplete", code="corrupt")
    tensors = read_tensors(tensors_path)
    try:
        return _join(doc["state"], tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise PtxsegError(index, f"malformed training state ({type(exc).__name__}: {exc})", code="corrupt") from None
