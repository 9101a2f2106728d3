"""Test-time augmentations: each a transform of the network input and its inverse on the output.

Registered in :data:`TTA_TRANSFORMS`; configs, model cards and ``--tta`` take their names from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ptxseg.errors import PtxsegError
from ptxseg.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]

#: name → (forward on the ``B×C×H×W`` input, inverse on the ``B×C×H×W`` output)
TTA_TRANSFORMS: Registry[tuple[Transform, Transform]] = Registry("test-time augmentation", "tta")
TTA_TRANSFORMS.register("identity", (lambda x: x, lambda y: y))
TTA_TRANSFORMS.register("hflip", (lambda x: x.flip(-1), lambda y: y.flip(-1)))
TTA_TRANSFORMS.register("vflip", (lambda x: x.flip(-2), lambda y: y.flip(-2)))
TTA_TRANSFORMS.register("rot90", (lambda x: torch.rot90(x, 1, (-2, -1)), lambda y: torch.rot90(y, -1, (-2, -1))))
TTA_TRANSFORMS.register("rot270", (lambda x: torch.rot90(x, -1, (-2, -1)), lambda y: torch.rot90(y, 1, (-2, -1))))


def check_tta(tta: Sequence[str]) -> list[str]:
    """The TTA list, validated (non-empty, known names, no repeats)."""
    names = list(tta) or ["identity"]
    for name in names:
        TTA_TRANSFORMS[name]
    if len(set(names)) != len(names):
        raise PtxsegError("--tta", f"repeated transform in {names}")
    return names


@torch.no_grad()
def tta_members_with_cls(
    model: torch.nn.Module, x: torch.Tensor, tta: Sequence[str] = ("identity",)
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities of every TTA member mapped back to the input frame (``T×B×1×H×W``) and, when the
    model has a classifier head, its probability for each member (``T×B``; else None)."""
    names = check_tta(tta)
    with_cls = getattr(model, "forward_with_cls", None)

    def run(batch: torch.Tensor):
        return with_cls(batch) if with_cls is not None else (model(batch), None)

    inputs = [TTA_TRANSFORMS[name][0](x) for name in names]
    if len(inputs) > 1 and len({tuple(t.shape) for t in inputs}) == 1:
        # every transform of a square input has its shape: one call with the T×B batch (faster, above all in ONNX Runtime)
        logits, cls = run(torch.cat(inputs))
        logits_parts = logits.split(len(x))
        cls_parts = cls.split(len(x)) if cls is not None else [None] * len(names)
    else:
        results = [run(t) for t in inputs]
        logits_parts, cls_parts = [r[0] for r in results], [r[1] for r in results]
    outs, heads = [], []
    for name, logits, cls in zip(names, logits_parts, cls_parts, strict=True):
        outs.append(TTA_TRANSFORMS[name][1](torch.sigmoid(logits.float())))
        if cls is not None:
            heads.append(torch.sigmoid(cls.float()).reshape(len(x)))
    return torch.stack(outs), torch.stack(heads) if heads else None


def tta_members(model: torch.nn.Module, x: torch.Tensor, tta: Sequence[str] = ("identity",)) -> torch.Tensor:
    """Probabilities of every TTA member, each mapped back to the input frame: ``T×B×1×H×W``."""
    return tta_members_with_cls(model, x, tta)[0]


def tta_predict(model: torch.nn.Module, x: torch.Tensor, tta: Sequence[str] = ("identity",)) -> torch.Tensor:
    """Mean probability over the TTA members: ``B×1×H×W`` in ``[0, 1]``."""
    return tta_members(model, x, tta).mean(0)
