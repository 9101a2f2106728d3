"""Segmentation losses of the published recipes, behind one registry.

Every loss takes ``(logits, target)`` with ``B×1×H×W`` tensors (targets in
``{0, 1}``) and returns a scalar. smp's implementations are used where they
exist (Focal, Tversky, Lovász); ptxseg adds what they lack: BCE with an
automatic positive weight, per-image soft Dice, the symmetric Lovász hinge,
weighted sums, epoch curricula, deep-supervision weighting and the auxiliary
"empty mask" BCE of classification heads.

Build a loss from a config value with :func:`build_loss`::

    build_loss("bce")                                           # a name
    build_loss({"name": "focal", "alpha": 0.25, "gamma": 2.0})  # a name with arguments
    build_loss({"name": "sum", "terms": [[3, "bce"], [1, "dice"], [4, "focal"]]})
    build_loss({"name": "curriculum", "stages": [[0, "wbce"], [5, "dice"], [10, "lovasz_symmetric"]]})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.data.split import pos_weight_from_counts
from ptxseg.errors import PtxsegError
from ptxseg.models.output import SegOutput
from ptxseg.registry import Registry

#: every loss a config can name (``[weight, spec]`` terms of ``sum`` and ``curriculum`` name them too)
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", "loss.name")


def register_loss(name: str) -> Callable:
    """Decorator: register a loss class or factory under ``name`` (a name registered twice is refused)."""
    return LOSSES.register(name)


def list_losses() -> list[str]:
    """Registered loss names."""
    return LOSSES.names()


def build_loss(spec: str | dict[str, Any] | nn.Module) -> nn.Module:
    """A loss from a name, a ``{"name": ..., **arguments}`` dict, or an existing module."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise PtxsegError("loss", f"expected a loss name or a mapping with 'name', got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    factory = LOSSES[name]
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise PtxsegError(f"loss.{name}", f"bad arguments {kwargs}: {exc}") from None


def auto_pos_weight(masks: Sequence[np.ndarray] | np.ndarray) -> float:
    """``N_neg / N_pos`` over all pixels of the training masks (the ``pos_weight: auto`` rule)."""
    pos = sum(int(np.count_nonzero(m)) for m in masks)
    return pos_weight_from_counts(pos, sum(int(np.asarray(m).size) for m in masks))


def has_auto_pos_weight(spec: Any) -> bool:
    """Whether a loss spec (at any depth) asks for ``pos_weight: auto``."""
    if isinstance(spec, dict):
        return spec.get("pos_weight") == "auto" or any(has_auto_pos_weight(v) for v in spec.values())
    if isinstance(spec, list | tuple):
        return any(has_auto_pos_weight(v) for v in spec)
    return False


def resolve_auto_pos_weight(spec: Any, value: float) -> Any:
    """A copy of a loss spec with every ``pos_weight: auto`` replaced by ``value``."""
    if isinstance(spec, dict):
        return {k: (value if k == "pos_weight" and v == "auto" else resolve_auto_pos_weight(v, value)) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return [resolve_auto_pos_weight(v, value) for v in spec]
    return spec


@register_loss("bce")
@register_loss("wbce")
class WeightedBCELoss(nn.Module):
    """Binary cross-entropy on logits; ``pos_weight`` multiplies the loss of positive pixels."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(pos_weight, str):
            raise PtxsegError("loss.pos_weight", "'auto' must be resolved from the training masks (auto_pos_weight)")
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=self.pos_weight)


@register_loss("dice")
class SoftDiceLoss(nn.Module):
    """``1 − (2Σpt + s) / (Σp + Σt + s)`` on sigmoid probabilities.

    ``per_image=True`` averages the loss of each image (an empty image with an
    empty prediction scores 0 loss thanks to ``smooth``); ``False`` pools the
    whole batch as one volume (smp's ``DiceLoss`` convention).
    """

    def __init__(self, per_image: bool = False, smooth: float = 1.0) -> None:
        super().__init__()
        self.per_image = per_image
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits).flatten(1)
        t = target.float().flatten(1)
        if not self.per_image:
            p, t = p.reshape(1, -1), t.reshape(1, -1)
        inter = (p * t).sum(1)
        dice = (2 * inter + self.smooth) / (p.sum(1) + t.sum(1) + self.smooth)
        return (1 - dice).mean()


@register_loss("focal")
def focal(alpha: float | None = 0.25, gamma: float = 2.0) -> nn.Module:
    """Focal loss (Lin et al. 2017), smp: ``−α_t (1−p_t)^γ log p_t``, mean over pixels."""
    return smp.losses.FocalLoss(mode="binary", alpha=alpha, gamma=gamma)


@register_loss("tversky")
def tversky(alpha: float = 0.5, beta: float = 0.5, smooth: float = 0.0) -> nn.Module:
    """Tversky loss, smp: ``1 − TP / (TP + α FP + β FN)`` (α = β = 0.5 is Dice)."""
    return smp.losses.TverskyLoss(mode="binary", alpha=alpha, beta=beta, smooth=smooth)


@register_loss("lovasz")
def lovasz(per_image: bool = True) -> nn.Module:
    """Lovász hinge (Berman et al. 2018), smp."""
    return smp.losses.LovaszLoss(mode="binary", per_image=per_image)


@register_loss("lovasz_symmetric")
class SymmetricLovaszLoss(nn.Module):
    """Mean of the Lovász hinge on the logits and on the negated logits with flipped targets,
    so background is optimised as carefully as foreground."""

    def __init__(self, per_image: bool = True) -> None:
        super().__init__()
        self.lovasz = smp.losses.LovaszLoss(mode="binary", per_image=per_image)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        return 0.5 * (self.lovasz(logits, target) + self.lovasz(-logits, 1 - target))


@register_loss("sum")
class WeightedSumLoss(nn.Module):
    """``Σ w_i · loss_i``; ``terms`` is a list of ``[weight, loss spec]``."""

    def __init__(self, terms: Sequence[Sequence[Any]]) -> None:
        super().__init__()
        if not terms:
            raise PtxsegError("loss.terms", "a sum needs at least one [weight, loss] term")
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList(build_loss(spec) for _, spec in terms)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to every term that follows one (a curriculum inside a sum advances too)."""
        for loss in self.terms:
            if hasattr(loss, "set_epoch"):
                loss.set_epoch(epoch)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.terms, strict=True))


@register_loss("curriculum")
class CurriculumLoss(nn.Module):
    """Switch losses at given epochs, optionally blending linearly over ``blend`` epochs.

    ``stages`` is a list of ``[start_epoch, loss spec]`` in increasing order;
    call :meth:`set_epoch` at the start of each epoch.
    """

    def __init__(self, stages: Sequence[Sequence[Any]], blend: int = 0) -> None:
        super().__init__()
        starts = [int(s) for s, _ in stages]
        if not starts or starts[0] != 0 or starts != sorted(starts):
            raise PtxsegError("loss.stages", f"stage start epochs must begin at 0 and increase, got {starts}")
        self.starts = starts
        self.stages = nn.ModuleList(build_loss(spec) for _, spec in stages)
        self.blend = int(blend)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the run-wide epoch (and pass it on to stage losses that follow one themselves)."""
        self.epoch = int(epoch)
        for loss in self.stages:
            if hasattr(loss, "set_epoch"):
                loss.set_epoch(epoch)

    def weights(self) -> list[float]:
        """The weight of each stage's loss at the current epoch."""
        k = max(i for i, s in enumerate(self.starts) if s <= self.epoch)
        w = [0.0] * len(self.starts)
        if self.blend > 0 and k > 0 and self.epoch - self.starts[k] < self.blend:
            f = (self.epoch - self.starts[k] + 1) / (self.blend + 1)
            w[k], w[k - 1] = f, 1 - f
        else:
            w[k] = 1.0
        return w

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights(), self.stages, strict=True) if w > 0)


#: logit given to an unknown pixel: sigmoid(-100) ≈ 4e-44, so with target 0 it is a certain, correct background
IGNORED_LOGIT = -100.0


def drop_ignored(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and target (same B×1×H×W shape) with the unknown pixels (target < 0) made inert for any loss.

    An unknown pixel becomes a constant, confidently correct background pixel: it adds nothing to BCE, focal,
    soft Dice, Tversky or the Lovász hinge (either sign) and passes no gradient, so every registered loss ignores
    it without an ``ignore_index`` of its own. Tensors without unknown pixels are returned as they are.
    """
    ignore = target < 0
    if not bool(ignore.any()):
        return logits, target
    return logits.masked_fill(ignore, IGNORED_LOGIT), target.clamp_min(0)


class SegmentationLoss(nn.Module):
    """The training criterion for any model output: tensor logits or a :class:`SegOutput`.

    ``loss(final) + Σ w_i · loss(aux_i, target resized to aux_i)`` divided by
    ``1 + Σ w_i`` (targets downsampled by nearest neighbour, as nnU-Net), plus
    ``cls_weight ·`` BCE of the classification logits against "mask not empty".
    """

    def __init__(self, loss: str | dict | nn.Module, cls_weight: float = 0.5) -> None:
        super().__init__()
        self.loss = build_loss(loss)
        self.cls_weight = float(cls_weight)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch)

    def forward(self, output: torch.Tensor | SegOutput, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, SegOutput):
            return self.loss(*drop_ignored(output, target))
        total = self.loss(*drop_ignored(output.logits, target))
        norm = 1.0
        for w, aux in zip(output.aux_weights, output.aux, strict=True):
            small = F.interpolate(target.float(), size=aux.shape[-2:], mode="nearest")
            total = total + w * self.loss(*drop_ignored(aux, small))
            norm += w
        total = total / norm
        if output.cls is not None:
            has_ptx = (target.flatten(1).amax(1) > 0).float().unsqueeze(1)
            total = total + self.cls_weight * F.binary_cross_entropy_with_logits(output.cls, has_ptx)
        return total
