"""The convolutional autoencoder that pretrains an encoder on unlabelled radiographs (``ptxseg pretrain``).

The PTXSeg-Net report initialises its encoder from an autoencoder trained to reconstruct unlabelled chest
radiographs. Here the encoder is any smp encoder (the one the segmentation model will use), followed by a light
decoder that upsamples the deepest features back to the image **without skip connections** (with them the
identity would be learnt).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from ptxseg.errors import PtxsegError


class ConvAutoencoder(nn.Module):
    """``encoder`` (an smp encoder, 1 input channel, ``depth`` stages) + an upsampling decoder (``width`` channels at
    full resolution) to a 1-channel image in [0, 1]: ``N×1×H×W → N×1×H×W`` for ``H, W`` multiples of ``2**depth``.

    Raises:
        PtxsegError: ``encoder`` is not an smp/timm encoder name.
    """

    def __init__(self, encoder: str = "resnet34", depth: int = 5, width: int = 32) -> None:
        super().__init__()
        try:
            self.encoder = smp.encoders.get_encoder(encoder, in_channels=1, depth=depth, weights=None)
        except KeyError:
            raise PtxsegError("--encoder", f"unknown smp encoder {encoder!r}; pretraining needs an smp/timm encoder name") from None
        channels = self.encoder.out_channels[-1]
        layers: list[nn.Module] = []
        for k in range(depth):
            out = max(width, channels // 2) if k < depth - 1 else width
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)[-1]))
