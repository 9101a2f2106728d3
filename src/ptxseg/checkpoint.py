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

import json
import uuid
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path, write_text_atomic

FORMAT = "ptxseg-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _tensors_for_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(path: str | PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` metadata atomically; return the weights path."""
    path = Path(path).with_suffix(".safetensors")
    with atomic_path(path) as tmp:
        save_file(_tensors_for_file(unwrap(model).state_dict()), str(tmp), metadata={"format": FORMAT})
    write_text_atomic(path.with_suffix(".json"), json.dumps({"format": FORMAT, **meta}, indent=2, default=str))
    return path


def read_meta(path: str | PathLike[str]) -> dict[str, Any]:
    """The JSON metadata beside a weights file."""
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.is_file():
        raise PtxsegError(path, "no metadata file beside the weights (expected " + meta_path.name + ")")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise PtxsegError(meta_path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if meta.get("format") != FORMAT:
        raise PtxsegError(meta_path, f"not a ptxseg checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def resolve_weights(path: str | PathLike[str]) -> Path:
    """A run directory (its ``best.safetensors``), a bundle directory (``model.safetensors``) or a weights file."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.safetensors", "model.safetensors"):
            if (p / name).is_file():
                return p / name
        raise PtxsegError(p, "no best.safetensors or model.safetensors in this directory (did training finish an epoch?)")
    if p.suffix != ".safetensors":
        raise PtxsegError(p, "weights must be a .safetensors file or a run directory (pickled checkpoints are not loaded)")
    if not p.is_file():
        raise PtxsegError(p, "no such weights file")
    return p


def load_model(path: str | PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model in eval mode from its metadata and weights."""
    from ptxseg.models import create_model

    weights = resolve_weights(path)
    meta = read_meta(weights)
    m = meta["model"]
    model = create_model(m["name"], encoder=m.get("encoder"), aux_classifier=m.get("aux_classifier", False), **m.get("kwargs", {}))
    try:
        model.load_state_dict(load_file(str(weights), device=str(device)))
    except (RuntimeError, OSError) as exc:
        raise PtxsegError(weights, f"weights do not fit {m['name']}/{m.get('encoder')}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), meta


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
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{prefix}: cannot store a {type(obj).__name__} in a training state")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
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
    with atomic_path(directory / name) as tmp:
        save_file(_tensors_for_file(tensors), str(tmp))
    write_text_atomic(directory / "state.json", json.dumps({"format": FORMAT, "tensors": name, "state": skeleton}))
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_state(directory: str | PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_state` wrote."""
    directory = Path(directory)
    index = directory / "state.json"
    if not index.is_file():
        raise PtxsegError(directory, "no saved training state (state.json) to resume from")
    doc = json.loads(index.read_text())
    if doc.get("format") != FORMAT:
        raise PtxsegError(index, f"not a ptxseg training state (format {doc.get('format')!r})")
    return _join(doc["state"], load_file(str(directory / doc["tensors"])))
