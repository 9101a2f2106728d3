"""Encoder freezing and staged unfreezing (deepest blocks first).

An encoder's *blocks* are its parameter-bearing children in forward order, with
``Sequential``/``ModuleList`` children opened one level (so a ResNet's blocks
are conv1, bn1 and each residual block of layer1…layer4). Unfreezing a
fraction ``f`` makes the deepest ``ceil(f · n)`` blocks trainable: the generic
features of the first layers stay fixed longest, as in the published staged
schedules. Frozen blocks also keep their BatchNorm statistics (eval mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ptxseg.artifacts.checkpoint import unwrap
from ptxseg.errors import PtxsegError


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder module of a registry model (``model.net.encoder`` or ``model.net.model.encoder`` for smp)."""
    net = getattr(unwrap(model), "net", unwrap(model))
    for candidate in (getattr(net, "encoder", None), getattr(getattr(net, "model", None), "encoder", None)):
        if isinstance(candidate, nn.Module):
            return candidate
    raise PtxsegError("training.unfreeze", f"{type(net).__name__} has no separable encoder to freeze")


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """Parameter-bearing blocks of ``encoder``, shallowest first."""
    blocks: list[nn.Module] = []
    for child in encoder.children():
        parts = list(child.children()) if isinstance(child, nn.Sequential | nn.ModuleList) else [child]
        blocks.extend(p for p in parts if any(True for _ in p.parameters()))
    return blocks


def trainable_fraction(epoch: int, freeze_epochs: int = 0, schedule: Sequence[tuple[int, float]] = ()) -> float:
    """The share of encoder blocks that train at ``epoch`` (0-based, within a stage)."""
    if schedule:
        fraction = 0.0 if schedule[0][0] > 0 else 1.0
        for start, f in schedule:
            if epoch >= start:
                fraction = f
        return fraction
    return 0.0 if epoch < freeze_epochs else 1.0


def set_encoder_trainable(model: nn.Module, fraction: float) -> int:
    """Make the deepest ``fraction`` of encoder blocks trainable and freeze the rest; return the frozen block count."""
    blocks = encoder_blocks(encoder_of(model))
    n_train = math.ceil(fraction * len(blocks) - 1e-9)
    n_frozen = len(blocks) - n_train
    for i, block in enumerate(blocks):
        frozen = i < n_frozen
        for p in block.parameters():
            p.requires_grad_(not frozen)
    return n_frozen


def freeze_batchnorm_of_frozen(model: nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen in eval mode (call after ``model.train()``)."""
    for m in unwrap(model).modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
