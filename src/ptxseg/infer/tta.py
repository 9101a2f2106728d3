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
