"""Export a model to ONNX and check the exported graph against PyTorch.

The graph has input ``image`` (``B×1×S×S``, dynamic batch) and output ``logits`` (``B×1×S×S``), plus ``cls``
(``B×1``, the classifier head's logit) when the model has a head — so classifier gating works deployed.
"""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path

OPSET = 17


class _WithHead(torch.nn.Module):
    """Both outputs of a model with a classifier head, as a tuple ONNX can name."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, cls = self.model.forward_with_cls(x)
        return logits, cls


def has_head(model: torch.nn.Module, size: int = 64) -> bool:
    """Whether the model's ``forward_with_cls`` returns a classifier logit."""
    with_cls = getattr(model, "forward_with_cls", None)
    if with_cls is None:
        return False
    with torch.no_grad():
        return with_cls(torch.zeros(1, 1, size, size))[1] is not None


def sample_inputs(size: int, in_channels: int = 1, n: int = 3) -> list[np.ndarray]:
    """Inputs the export is verified on: seeded noise and smooth ramps at the scale of normalised radiographs."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    out = [rng.standard_normal((1, in_channels, size, size)).astype(np.float32)]
    out.append(np.broadcast_to(ramp[None, None, None, :] * ramp[None, None, :, None], (1, in_channels, size, size)).astype(np.float32))
    out += [np.clip(rng.normal(0, 0.6, (2, in_channels, size, size)), -1, 1).astype(np.float32) for _ in range(max(0, n - 2))]
    return out


def export_onnx(
    model: torch.nn.Module, path: str | PathLike[str], size: int = 512, in_channels: int = 1, check: bool = True, atol: float = 1e-4
) -> float:
    """Write ``model`` (eval mode) as ONNX opset 17 with a dynamic batch, atomically; outputs ``logits`` (and ``cls``).

    With ``check``, runs the file in ONNX Runtime on :func:`sample_inputs` and compares with PyTorch; returns the
    largest difference relative to the outputs' scale (``max|a−b| / max(1, max|b|)``), raising if it exceeds ``atol``.
    """
    model = model.eval()
    head = has_head(model)
    net = _WithHead(model).eval() if head else model  # eval: the exporter restores the wrapper's mode, recursively
    names = ["logits", "cls"] if head else ["logits"]
    x = torch.from_numpy(sample_inputs(size, in_channels, 1)[0])
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for export
        torch.onnx.export(
            net,
            (x,),
            str(tmp),
            opset_version=OPSET,
            input_names=["image"],
            output_names=names,
            dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            dynamo=False,
        )
    return verify_onnx(net, path, size, in_channels, atol) if check else 0.0


def verify_onnx(model: torch.nn.Module, path: str | PathLike[str], size: int, in_channels: int = 1, atol: float = 1e-4) -> float:
    """The largest relative difference between ONNX Runtime and PyTorch over :func:`sample_inputs` (every output)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    err = 0.0
    for x in sample_inputs(size, in_channels):
        got = session.run(None, {"image": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        refs = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
        for a, b in zip(got, refs, strict=True):
            err = max(err, float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max()))))
    if err > atol:
        raise PtxsegError(path, f"ONNX output differs from PyTorch by {err:.2e} (> {atol:g})")
    return err
