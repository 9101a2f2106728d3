"""ONNX Runtime as a model: a bundle's ``model.onnx`` behind the interface the TTA and ensemble code call."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import torch

from ptxseg.errors import reading


class OrtModel:
    """An ONNX Runtime session behind the interface the TTA code calls (``forward_with_cls`` on torch tensors).

    The session is created once; ``threads`` sets its intra-op threads. Outputs: ``logits`` and, for a model
    with a classifier head, ``cls``.
    """

    has_dropout = False
    training = False

    def __init__(self, path: str | PathLike[str], threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        with reading(path, "ONNX model"):
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path = Path(path)

    def forward_with_cls(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.session.run(None, {"image": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})
        return torch.from_numpy(out[0]), (torch.from_numpy(out[1]) if len(out) > 1 else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cls(x)[0]

    def eval(self) -> OrtModel:
        return self
