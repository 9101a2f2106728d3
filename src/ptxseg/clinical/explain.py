"""Grad-CAM for a segmentation model's image-level decision (Selvaraju et al. 2017, applied as in
pytorch-grad-cam's semantic-segmentation target).

The decision explained is "pneumothorax here": the sum of the mask logits over
the predicted mask (over the 1 % most probable pixels when the mask is empty),
or the classifier head's logit when the model has one. Its gradients with
respect to the deepest encoder features, averaged per channel, weight those
features; the ReLU of the weighted sum, upsampled to the input, is the heat map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptxseg.errors import PtxsegError


def cam_layer(model: nn.Module) -> nn.Module:
    """The deepest encoder stage of a registry model (the layer Grad-CAM reads)."""
    net = getattr(model, "net", model)
    enc = getattr(net, "encoder", None)
    if isinstance(enc, nn.ModuleList):  # nnunet_ds: a list of stages
        return enc[-1]
    if enc is not None and hasattr(enc, "stages"):  # timm ConvNeXt (P-DeSeRay)
        return enc.stages[-1]
    if isinstance(enc, nn.Module):  # smp and gated U-Nets: the encoder returns its feature list
        return enc
    raise PtxsegError(getattr(model, "name", type(model).__name__), "Grad-CAM: no encoder to explain")


def grad_cam(model: nn.Module, x: torch.Tensor, mask: np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM heat map, float32 S×S in ``[0, 1]``, for one network input ``x`` (1×1×S×S).

    ``mask`` (S×S bool, the predicted mask at the network size) selects the
    pixels whose logits are explained; None or empty: the 1 % most probable.
    """
    layer = cam_layer(model)
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        feats = output
        if isinstance(output, (list, tuple)):
            feats = [o for o in output if isinstance(o, torch.Tensor) and o.ndim == 4][-1]
        feats.retain_grad()
        store["features"] = feats

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)  # gradients flow even when the encoder is frozen
        with torch.enable_grad():
            logits, cls = model.forward_with_cls(x) if hasattr(model, "forward_with_cls") else (model(x), None)
            if cls is not None:
                target = cls.sum()
            else:
                region = torch.as_tensor(np.asarray(mask, dtype=bool)) if mask is not None else None
                if region is None or not bool(region.any()):
                    flat = logits[0, 0].detach().flatten()
                    k = max(1, flat.numel() // 100)
                    region = torch.zeros_like(flat, dtype=torch.bool)
                    region[flat.topk(k).indices] = True
                    region = region.reshape(logits.shape[-2:])
                target = logits[0, 0][region].sum()
            model.zero_grad(set_to_none=True)
            target.backward()
    finally:
        handle.remove()
        model.train(was_training)
    feats = store["features"]
    weights = feats.grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * feats).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def cam_for_image(predictor, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM of the first model of a :class:`~ptxseg.infer.predictor.Predictor` for an H×W image, on the image's pixel grid
    (``mask``, on the same grid, is carried to the network grid by the model's preprocessing)."""
    pp = predictor.preprocessing
    x, frame = pp.network_input(image)
    small = None if mask is None else pp.mask_to_network(mask, frame).astype(bool)
    cam = grad_cam(predictor.models[0], torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None], small)
    return pp.to_source(cam, frame)
