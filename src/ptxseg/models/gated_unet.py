"""U-Nets with additive attention gates on every skip: Attention U-Net and PTXSeg-Net.

Both use any encoder of the registry (smp's ``get_encoder``: ImageNet
weights, a local safetensors file, or an autoencoder-pretrained encoder).

* ``attention_unet`` (Oktay et al. 2018): each skip feature ``x`` is
  re-weighted by ``α = σ(ψ(ReLU(W_x x + W_g g)))``, the gating signal ``g``
  coming from the decoder one level deeper; decoder stages of two 3×3
  conv-BN-ReLU.
* ``ptxsegnet``: the same gates, residual decoder blocks (the encoder being
  residual too, e.g. ResNet-34) and deep-supervision heads at the four
  decoder depths below full resolution, whose losses weigh 0.2, 0.4, 0.6,
  0.8 (deepest smallest) besides the final output.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.models.output import SegOutput
from ptxseg.models.registry import register_model

DECODER_CHANNELS = (256, 128, 64, 32, 16)
#: PTXSeg-Net deep-supervision loss weights, deepest head first.
PTXSEGNET_DS_WEIGHTS = (0.2, 0.4, 0.6, 0.8)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvBlock(nn.Sequential):
    """Two 3×3 conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class ResidualBlock(nn.Module):
    """Pre-addition residual block: two 3×3 conv-BN (ReLU between), 1×1 projection shortcut, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class AttentionGate(nn.Module):
    """Additive attention gate: ``x · σ(ψ(ReLU(W_x x + W_g g)))`` with ``g`` resized to ``x``."""

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 8)
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = self.psi(F.relu(self.w_x(x) + self.w_g(g)))
        return x * alpha


class GatedUNet(nn.Module):
    """Registry encoder + decoder with attention-gated skips (see module docstring).

    Args:
        block: ``"conv"`` (two conv-BN-ReLU) or ``"residual"`` decoder stages.
        ds_weights: loss weights of deep-supervision heads on the decoder
            stages before the last, deepest first; empty for none.
    """

    def __init__(
        self,
        encoder: str,
        in_channels: int,
        classes: int,
        imagenet: bool,
        aux_classifier: bool,
        block: str = "conv",
        ds_weights: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        self.encoder = smp.encoders.get_encoder(encoder, in_channels=in_channels, depth=5, weights="imagenet" if imagenet else None)
        enc_ch = list(self.encoder.out_channels)  # stride 1 (the input), 2, 4, 8, 16, 32
        skips = enc_ch[1:-1][::-1]  # strides 16, 8, 4, 2
        Block = ResidualBlock if block == "residual" else ConvBlock
        self.gates = nn.ModuleList()
        self.stages = nn.ModuleList()
        cur = enc_ch[-1]
        for i, cout in enumerate(DECODER_CHANNELS):
            skip = skips[i] if i < len(skips) else 0
            self.gates.append(AttentionGate(skip, cur) if skip else nn.Identity())
            self.stages.append(Block(cur + skip, cout))
            cur = cout
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], classes, 3, padding=1)
        self.ds_weights = list(ds_weights)
        # heads on the stages just before the last one, deepest first
        first = len(DECODER_CHANNELS) - 1 - len(ds_weights)
        self.ds_stages = list(range(first, len(DECODER_CHANNELS) - 1))
        self.ds_heads = nn.ModuleList(nn.Conv2d(DECODER_CHANNELS[i], classes, 1) for i in self.ds_stages)
        self.classifier = (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(enc_ch[-1], 1)) if aux_classifier else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | SegOutput:
        feats = self.encoder(x)
        skips = [f if f.shape[1] else None for f in feats[1:-1][::-1]]
        y = feats[-1]
        aux = []
        for i, (gate, stage) in enumerate(zip(self.gates, self.stages, strict=True)):
            skip = skips[i] if i < len(skips) else None
            up = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = stage(torch.cat([up, gate(skip, y)], 1) if skip is not None else up)
            if self.training and i in self.ds_stages:  # heads only matter to the training loss
                aux.append(self.ds_heads[self.ds_stages.index(i)](y))
        logits = self.head(y)
        cls = self.classifier(feats[-1]) if self.classifier is not None else None
        if aux or cls is not None:
            return SegOutput(logits=logits, aux=aux, aux_weights=self.ds_weights if aux else [], cls=cls)
        return logits


@register_model("attention_unet", description="Attention U-Net (Oktay 2018): additive attention gates on every skip")
def attention_unet(encoder: str, in_channels: int, classes: int, aux_classifier: bool, imagenet: bool) -> GatedUNet:
    return GatedUNet(encoder, in_channels, classes, imagenet, aux_classifier, block="conv")


@register_model("ptxsegnet", description="PTXSeg-Net: residual blocks, attention gates, deep supervision 0.2/0.4/0.6/0.8")
def ptxsegnet(encoder: str, in_channels: int, classes: int, aux_classifier: bool, imagenet: bool) -> GatedUNet:
    return GatedUNet(encoder, in_channels, classes, imagenet, aux_classifier, block="residual", ds_weights=PTXSEGNET_DS_WEIGHTS)
