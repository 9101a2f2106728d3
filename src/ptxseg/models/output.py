"""What a segmentation model returns in training mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SegOutput:
    """Training-mode output of a model with deep supervision and/or a classification head.

    Attributes:
        logits: final mask logits, ``B×classes×H×W`` at the input size.
        aux: deep-supervision logits, deepest first, each ``B×classes×h×w`` at
            its own decoder resolution (the loss resizes targets to them).
        aux_weights: the loss weight of each entry of ``aux`` (same order).
        cls: image-level logits ``B×1`` ("is there any pneumothorax?"), or None.
    """

    logits: torch.Tensor
    aux: list[torch.Tensor] = field(default_factory=list)
    aux_weights: list[float] = field(default_factory=list)
    cls: torch.Tensor | None = None
