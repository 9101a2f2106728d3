"""Augmentation pipelines from config: same geometry for image and mask, validation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ptxseg.data.augment import build_pipeline
from ptxseg.data.preprocess import normalize
from ptxseg.errors import PtxsegError


def _pair():
    image = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))  # brighter to the right
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 5:15] = 1  # top-left, non-symmetric
    return image, mask


def test_geometry_applies_to_image_and_mask_alike():
    image, mask = _pair()
    out = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}])(image=image, mask=mask)
    np.testing.assert_array_equal(out["mask"], mask[:, ::-1])
    np.testing.assert_allclose(out["image"], image[:, ::-1])
    rot = build_pipeline([{"name": "Affine", "rotate": [15, 15], "p": 1.0}])(image=image, mask=mask)
    assert rot["mask"].sum() > 0 and not np.array_equal(rot["mask"], mask)


def test_published_style_pipeline_runs():
    specs = [
        {
            "name": "OneOf",
            "p": 1.0,
            "transforms": [
                {"name": "CLAHE", "clip_limit": 4, "tile_grid_size": [4, 4]},
                {"name": "RandomGamma", "gamma_limit": [60, 120]},
                {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2},
            ],
        },
        {
            "name": "OneOf",
            "p": 1.0,
            "transforms": [
                {"name": "Blur", "blur_limit": [3, 5]},
                {"name": "MotionBlur", "blur_limit": [3, 5]},
                {"name": "MedianBlur", "blur_limit": 3},
            ],
        },
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "Affine", "translate_percent": [-0.2, 0.2], "scale": [0.8, 1.2], "rotate": [-20, 20], "p": 1.0},
    ]
    image, mask = _pair()
    out = build_pipeline(specs, size=32)(image=image, mask=mask)
    assert out["image"].shape == (32, 32) and out["image"].dtype == np.float32
    assert out["mask"].shape == (32, 32) and set(np.unique(out["mask"])) <= {0, 1}


def test_validation_only_resizes():
    image, mask = _pair()
    out = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], size=32, train=False)(image=image, mask=mask)
    assert out["image"][0, 0] < out["image"][0, -1]  # not flipped
    assert out["mask"][:16, :8].any()


def test_errors_name_the_transform():
    with pytest.raises(PtxsegError, match="HorizontalFlp.*did you mean HorizontalFlip"):
        build_pipeline([{"name": "HorizontalFlp"}])
    with pytest.raises(PtxsegError, match="augment.CLAHE: bad arguments"):
        build_pipeline([{"name": "CLAHE", "clip_limit": "lots"}])
    with pytest.raises(PtxsegError, match="needs a 'name'"):
        build_pipeline([{"p": 0.5}])


def test_normalize():
    x = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    np.testing.assert_allclose(normalize(x), [[-1.0, -0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(normalize(np.ones((2, 2))), -1.0)  # constant image: 0 after min-max
    with pytest.raises(PtxsegError):
        normalize(x, mode="zscore")
