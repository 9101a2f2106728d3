"""Architectures that segmentation-models-pytorch provides: U-Net, U-Net++, FPN, DeepLabV3+, and
UEfficientNet (U-Net on EfficientNet-B4 with layer-specific dropout)."""

from __future__ import annotations

import functools

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.models.output import SegOutput
from ptxseg.models.registry import register_model

_AUX = {"classes": 1, "pooling": "avg", "dropout": 0.2}


class SmpNet(nn.Module):
    """An smp model whose optional classification head output becomes a :class:`SegOutput`."""

    def __init__(self, model: nn.Module, aux_classifier: bool) -> None:
        super().__init__()
        self.model = model
        self.aux_classifier = aux_classifier

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        out = self.model(x)
        if self.aux_classifier:
            mask, label = out
            return SegOutput(logits=mask, cls=label)
        return out


def _smp(arch: str, encoder: str, in_channels: int, classes: int, aux_classifier: bool, imagenet: bool, **kw) -> SmpNet:
    model = smp.create_model(
        arch,
        encoder_name=encoder,
        encoder_weights="imagenet" if imagenet else None,
        in_channels=in_channels,
        classes=classes,
        aux_params=dict(_AUX) if aux_classifier else None,
        **kw,
    )
    return SmpNet(model, aux_classifier)


#: registry name → (smp architecture, description)
SMP_ARCHITECTURES = {
    "unet": ("unet", "U-Net (Ronneberger 2015), smp"),
    "unetplusplus": ("unetplusplus", "U-Net++ (Zhou 2018), smp"),
    "fpn": ("fpn", "Feature Pyramid Network (Kirillov 2019), smp"),
    "deeplabv3plus": ("deeplabv3plus", "DeepLabV3+ (Chen 2018), smp"),
}
_SMP_CLASSES = {"unet": smp.Unet, "unetplusplus": smp.UnetPlusPlus, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus}
for _name, (_arch, _description) in SMP_ARCHITECTURES.items():
    register_model(_name, description=_description, options=_SMP_CLASSES[_arch])(functools.partial(_smp, _arch))


#: UEfficientNet dropout: bottleneck, then decoder stages from deepest to shallowest.
UEFFICIENTNET_DROPOUT = {"bottleneck": 0.4, "decoder": (0.3, 0.25, 0.2, 0.1, 0.1)}


@register_model(
    "uefficientnet",
    default_encoder="efficientnet-b4",
    description="U-Net on EfficientNet-B4, layer-specific dropout",
    options=smp.Unet,
)
def uefficientnet(**kw) -> SmpNet:
    """smp U-Net with spatial dropout 0.4 on the bottleneck features, 0.3/0.25/0.2 after the deep
    and middle decoder stages and 0.1 after the two shallow ones (active in train mode only)."""
    net = _smp("unet", **kw)
    net.mc_dropout = False  # SegmentationModel.stochastic() sets it: dropout at inference, BatchNorm still in eval
    p_bottleneck = UEFFICIENTNET_DROPOUT["bottleneck"]

    def bottleneck_dropout(module, _inputs, features):
        return [*features[:-1], F.dropout2d(features[-1], p_bottleneck, module.training or net.mc_dropout)]

    net.model.encoder.register_forward_hook(bottleneck_dropout)
    for block, p in zip(net.model.decoder.blocks, UEFFICIENTNET_DROPOUT["decoder"], strict=True):
        block.register_forward_hook(lambda module, _inputs, out, p=p: F.dropout2d(out, p, module.training or net.mc_dropout))
    return net
