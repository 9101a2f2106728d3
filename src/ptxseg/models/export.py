"""Export a model to ONNX and check the exported graph against PyTorch."""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path

OPSET = 17


def export_onnx(
    model: torch.nn.Module, path: str | PathLike[str], size: int = 512, in_channels: int = 1, check: bool = True, atol: float = 1e-4
) -> float:
    """Write ``model`` (eval mode, logits output) as ONNX opset 17 with dynamic batch, atomically.

    With ``check``, runs the file in onnxruntime on a random input and compares
    with PyTorch; returns the largest absolute difference relative to the
    logits' scale (``max|a-b| / max(1, max|b|)``), raising if it exceeds ``atol``.
    """
    model = model.eval()
    x = torch.randn(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for export
        torch.onnx.export(
            model,
            (x,),
            str(tmp),
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    if not check:
        return 0.0
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    err = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
    if err > atol:
        raise PtxsegError(path, f"ONNX output differs from PyTorch by {err:.2e} (> {atol:g})")
    return err
