"""Tensors on disk: safetensors files written and read safely (no pickle, no half-written file, no NaN unnoticed).

Weights, resume states and pretrained encoders all go through these three functions: :func:`write_tensors`
serialises in memory and writes atomically (a full disk is an ``OSError``, never a truncated file under the final
name), :func:`read_tensors` reads an untrusted file (truncated or garbage files are one :class:`PtxsegError`),
and :func:`non_finite_tensors` names the tensors holding NaN or infinity.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import write_bytes_atomic
from ptxseg.io.jsonfile import MAX_JSON_BYTES


def _tensors_for_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as a safetensors file atomically (contiguous CPU copies; shared storage is fine)."""
    # serialised in memory and written by us: a full disk is an OSError, never a truncated file under the final name
    write_bytes_atomic(path, safetensors_save(_tensors_for_file(tensors), metadata=metadata))


def read_tensors(path: str | PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of an untrusted ``.safetensors`` file; truncated or garbage files are a :class:`PtxsegError`."""
    path = Path(path)
    with reading(path, "safetensors file"):
        size = path.stat().st_size
        if size < 8:
            raise PtxsegError(path, f"not a safetensors file ({size} bytes)", code="corrupt")
        with open(path, "rb") as fh:
            header = int.from_bytes(fh.read(8), "little")
        if header > min(size - 8, MAX_JSON_BYTES):
            raise PtxsegError(path, f"not a safetensors file (header of {header} bytes in a {size}-byte file)", code="corrupt")
        return load_file(str(path), device=str(device))
