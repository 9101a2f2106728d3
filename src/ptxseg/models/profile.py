"""Parameter and multiply-accumulate counts of a model."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: torch.nn.Module, size: int = 512, in_channels: int = 1) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a ``1×in_channels×size×size`` input.

    Measured with torch's ``FlopCounterMode`` (convolutions, matrix products;
    1 MAC = 2 FLOPs); element-wise operations are not counted.
    """
    model = model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, in_channels, size, size))
    return counter.get_total_flops() // 2
