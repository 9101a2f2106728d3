"""nnU-Net-style 2-D U-Net with deep supervision (``nnunet_ds``).

Follows nnU-Net's default 2-D plain U-Net (Isensee et al. 2021): stages of
two 3×3 conv → InstanceNorm (affine) → LeakyReLU(0.01); downsampling by a
stride-2 first convolution (no pooling); features 32-64-128-256-320-320;
transposed-convolution upsampling; segmentation heads on every decoder level.
As nnU-Net does, the lowest-resolution head is left out and the others weigh
1/2 per level of depth (here 0.125, 0.25, 0.5 for strides 8, 4, 2; the
final output 1; the loss normalises).

Written here rather than taken from MONAI's DynUNet: it is a few dozen lines,
avoids a MONAI dependency for one class, and returns ptxseg's
:class:`~ptxseg.models.output.SegOutput` directly.
"""

from __future__ import annotations

import torch
from torch import nn

from ptxseg.errors import PtxsegError
from ptxseg.models.output import SegOutput
from ptxseg.models.registry import register_model

FEATURES = (32, 64, 128, 256, 320, 320)
DS_WEIGHTS = (0.125, 0.25, 0.5)  # strides 8, 4, 2 (deepest first)


def conv_in_lrelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.01, inplace=True)
    )


class NNUNetDS(nn.Module):
    """Plain U-Net, instance norm, leaky ReLU, strided-conv downsampling, deep supervision."""

    def __init__(self, in_channels: int = 1, classes: int = 1, aux_classifier: bool = False) -> None:
        super().__init__()
        f = FEATURES
        self.encoder = nn.ModuleList(
            nn.Sequential(
                conv_in_lrelu(in_channels if k == 0 else f[k - 1], f[k], stride=1 if k == 0 else 2),  # strided conv downsampling
                conv_in_lrelu(f[k], f[k]),
            )
            for k in range(len(f))
        )
        self.up = nn.ModuleList(nn.ConvTranspose2d(f[k], f[k - 1], 2, stride=2) for k in range(len(f) - 1, 0, -1))
        self.decoder = nn.ModuleList(
            nn.Sequential(conv_in_lrelu(2 * f[k - 1], f[k - 1]), conv_in_lrelu(f[k - 1], f[k - 1])) for k in range(len(f) - 1, 0, -1)
        )
        # decoder outputs have strides 16, 8, 4, 2, 1; heads on 8, 4, 2 (aux) and 1 (final)
        self.ds_levels = (1, 2, 3)
        self.ds_heads = nn.ModuleList(nn.Conv2d(f[len(f) - 2 - i], classes, 1) for i in self.ds_levels)
        self.head = nn.Conv2d(f[0], classes, 1)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(f[-1], 1)) if aux_classifier else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        bottleneck = x
        aux = []
        for i, (up, dec) in enumerate(zip(self.up, self.decoder, strict=True)):
            x = dec(torch.cat([up(x), skips[-2 - i]], 1))
            if self.training and i in self.ds_levels:
                aux.append(self.ds_heads[self.ds_levels.index(i)](x))
        logits = self.head(x)
        cls = self.classifier(bottleneck) if self.classifier is not None else None
        if aux or cls is not None:
            return SegOutput(logits=logits, aux=aux, aux_weights=list(DS_WEIGHTS) if aux else [], cls=cls)
        return logits


@register_model("nnunet_ds", takes_encoder=False, default_encoder=None, description="nnU-Net-style plain U-Net with deep supervision")
def nnunet_ds(encoder=None, in_channels: int = 1, classes: int = 1, aux_classifier: bool = False, imagenet: bool = False) -> NNUNetDS:
    if imagenet:
        raise PtxsegError("pretrained", "nnunet_ds has no ImageNet weights (nnU-Net trains from scratch)")
    return NNUNetDS(in_channels, classes, aux_classifier)
