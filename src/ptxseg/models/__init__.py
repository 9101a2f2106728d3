"""Segmentation architectures of the published works behind one registry.

>>> from ptxseg.models import create_model
>>> model = create_model("unet", encoder="resnet34", in_channels=1, classes=1)
"""

from ptxseg.models.autoencoder import ConvAutoencoder
from ptxseg.models.output import SegOutput
from ptxseg.models.registry import ENCODERS, MODELS, SegmentationModel, create_model, list_models, model_spec, register_model

__all__ = [
    "ENCODERS",
    "ConvAutoencoder",
    "MODELS",
    "SegOutput",
    "SegmentationModel",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
