"""Albumentations pipelines built from config values, applied identically to image and mask.

A transform is ``{"name": <albumentations class>, **arguments}``; containers
(``OneOf``, ``SomeOf``, ``Sequential``) take ``transforms: [...]``::

    [{"name": "HorizontalFlip", "p": 0.5},
     {"name": "Affine", "translate_percent": 0.05, "scale": [0.95, 1.05], "rotate": [-10, 10], "p": 0.5},
     {"name": "OneOf", "p": 0.5, "transforms": [
         {"name": "CLAHE", "clip_limit": 4, "tile_grid_size": [4, 4]},
         {"name": "RandomGamma", "gamma_limit": [60, 120]},
         {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2}]}]

Images are float32 H×W in ``[0, 1]`` (albumentations 2 handles float32 for
these transforms, CLAHE included); masks are uint8. The resize to the network
size and the normalisation come after, from the model's
:class:`~ptxseg.data.preprocess.Preprocessing`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from ptxseg.errors import PtxsegError

_CONTAINERS = ("OneOf", "SomeOf", "Sequential")


def build_transform(spec: dict[str, Any]) -> A.BasicTransform | A.BaseCompose:
    """One albumentations transform (or container) from its config mapping."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise PtxsegError("augment", f"each transform needs a 'name', got {spec!r}")
    name = spec["name"]
    kwargs = {k: (tuple(v) if isinstance(v, list) and k != "transforms" else v) for k, v in spec.items() if k != "name"}
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform | A.BaseCompose)):
        close = difflib.get_close_matches(name, [n for n in dir(A) if n[:1].isupper()], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise PtxsegError(f"augment.{name}", f"not an albumentations transform{hint}")
    if name in _CONTAINERS:
        kwargs["transforms"] = [build_transform(t) for t in kwargs.get("transforms", [])]
    try:
        return cls(**kwargs)
    except Exception as exc:  # albumentations validates arguments with pydantic
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PtxsegError(f"augment.{name}", f"bad arguments {kwargs}: {reason}") from None


def build_pipeline(specs: Sequence[dict[str, Any]] = (), size: int | None = None, train: bool = True) -> A.Compose:
    """The training pipeline (``specs`` then a resize to ``size``), or with ``train=False`` the resize alone."""
    transforms = [build_transform(s) for s in specs] if train else []
    if size is not None:
        transforms.append(A.Resize(size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST))
    return A.Compose(transforms)


def check_pipeline(specs: Sequence[dict[str, Any]], image_shape: tuple[int, int], where: str = "augment") -> None:
    """Run the training pipeline once on a synthetic image of ``image_shape`` (seeded), so a pipeline that cannot
    run (a crop larger than the image, a transform refusing float32 …) fails when the config is validated,
    not in a DataLoader worker. Raises :class:`PtxsegError` naming the transforms."""
    pipeline = build_pipeline(specs, size=None, train=True)
    h, w = image_shape
    image = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    try:
        for seed in range(3):  # a few draws so that p < 1 transforms run too
            pipeline.set_random_seed(seed)
            out = pipeline(image=image, mask=mask)
            if out["image"].ndim != 2 or out["image"].shape != out["mask"].shape or min(out["image"].shape) < 1:
                raise ValueError(f"output image {out['image'].shape} and mask {out['mask'].shape} are not one 2-D grid")
            if not np.isfinite(out["image"]).all():
                raise ValueError("output holds NaN or infinity")
    except PtxsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - albumentations raises many types at run time
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise PtxsegError(where, f"the augmentation pipeline cannot run on a {h}×{w} image ({type(exc).__name__}: {reason})") from None
