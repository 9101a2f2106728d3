"""P-DeSeRay: a ConvNeXt-T "patchify" encoder with a U-Net decoder.

Encoder (timm ``convnext_tiny``): a 4×4 stride-4 convolution stem with
LayerNorm, then four stages of 3-3-9-3 ConvNeXt blocks (7×7 depthwise conv,
LayerNorm, 1×1 expansion ×4, GELU, 1×1 projection, layer scale, residual)
with 2×2 stride-2 downsampling between stages, widths 96-192-384-768.

Decoder: five stages of two 3×3 conv-BN-ReLU at 256-128-64-32-16 channels,
each after a ×2 upsampling; skips from the encoder stages (1/16, 1/8, 1/4)
and from the **upsampled stem output** (1/4 → 1/2); a final 3×3 conv head.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.models.output import SegOutput
from ptxseg.models.registry import register_model

DECODER_CHANNELS = (256, 128, 64, 32, 16)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderStage(nn.Module):
    """×2 upsampling, concatenation with an optional skip, two 3×3 conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(cin + skip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.convs(x)


class PDeSeRay(nn.Module):
    """ConvNeXt-T encoder + U-Net decoder with a stem skip (see module docstring)."""

    def __init__(self, in_channels: int = 1, classes: int = 1, imagenet: bool = False, aux_classifier: bool = False) -> None:
        super().__init__()
        self.encoder = timm.create_model("convnext_tiny", pretrained=imagenet, in_chans=in_channels, num_classes=0)
        self.encoder.head = nn.Identity()  # the classifier's norm is unused by a segmentation decoder
        widths = [stage.blocks[-1].mlp.fc2.out_features for stage in self.encoder.stages]  # 96, 192, 384, 768
        stem_width = widths[0]
        d = DECODER_CHANNELS
        self.decoder = nn.ModuleList(
            [
                DecoderStage(widths[3], widths[2], d[0]),  # 1/32 → 1/16, skip stage 3
                DecoderStage(d[0], widths[1], d[1]),  # → 1/8, skip stage 2
                DecoderStage(d[1], widths[0], d[2]),  # → 1/4, skip stage 1
                DecoderStage(d[2], stem_width, d[3]),  # → 1/2, skip: upsampled stem output
                DecoderStage(d[3], 0, d[4]),  # → 1/1
            ]
        )
        self.head = nn.Conv2d(d[4], classes, 3, padding=1)
        self.classifier = (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[3], 1)) if aux_classifier else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        stem = self.encoder.stem(x)  # 1/4, LayerNorm'd patch embedding
        feats = []
        h = stem
        for stage in self.encoder.stages:
            h = stage(h)
            feats.append(h)
        stem_up = F.interpolate(stem, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.decoder[0](feats[3], feats[2])
        y = self.decoder[1](y, feats[1])
        y = self.decoder[2](y, feats[0])
        y = self.decoder[3](y, stem_up)
        y = self.decoder[4](y)
        logits = self.head(y)
        if self.classifier is not None:
            return SegOutput(logits=logits, cls=self.classifier(feats[3]))
        return logits


@register_model(
    "pdeseray", takes_encoder=False, default_encoder=None, description="P-DeSeRay: ConvNeXt-T patchify encoder + U-Net decoder"
)
def pdeseray(encoder=None, in_channels: int = 1, classes: int = 1, aux_classifier: bool = False, imagenet: bool = False) -> PDeSeRay:
    return PDeSeRay(in_channels=in_channels, classes=classes, imagenet=imagenet, aux_classifier=aux_classifier)
