"""Lung-field post-processing on the real Shenzhen lung masks: two lungs, sides, merged fields, a missing lung."""

from __future__ import annotations

import cv2
import numpy as np

from ptxseg.io.images import read_mask
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.measure.metrics import dice_per_image

from .conftest import shared_path


def _shenzhen_masks():
    folder = shared_path("lungs/lungmasks")
    return [read_mask(p) for p in sorted(folder.glob("*_mask.png"))]


def test_real_masks_split_into_two_lungs_on_the_right_sides():
    masks = _shenzhen_masks()
    assert len(masks) == 11
    for m in masks:
        fields = split_lungs(m)
        assert fields.notes == [] and fields.right.any() and fields.left.any()
        assert np.array_equal(fields.right | fields.left, m != 0)  # nothing lost, nothing added
        cols = np.arange(m.shape[1])
        # the patient's right lung is on the image's left
        assert (
            (fields.right.sum(0) * cols).sum() / fields.right.sum()
            < m.shape[1] / 2
            < (fields.left.sum(0) * cols).sum() / fields.left.sum()
        )


def test_merged_fields_are_split_at_the_mediastinum_and_noise_is_dropped():
    for m in _shenzhen_masks()[:4]:
        truth = split_lungs(m)
        merged = m.copy()
        both = np.flatnonzero(truth.right.any(1) & truth.left.any(1))
        r = int(both[len(both) // 2])  # a row crossing both lungs
        cr = int(np.flatnonzero(truth.right[r])[-1])  # inner edge of the right lung on that row
        cl = int(np.flatnonzero(truth.left[r])[0])  # inner edge of the left lung
        merged[r - 3 : r + 3, cr - 2 : cl + 3] = 1  # a thin bridge across the mediastinum
        merged[5:9, 5:9] = 1  # a speck of noise
        fields = split_lungs(merged)
        assert any("merged" in n for n in fields.notes) and any("dropped" in n for n in fields.notes)
        assert dice_per_image(fields.right, truth.right)[0] > 0.97 and dice_per_image(fields.left, truth.left)[0] > 0.97


def test_a_missing_lung_is_reported():
    m = _shenzhen_masks()[0]
    right_only = split_lungs(m).right
    fields = split_lungs(right_only)
    assert fields.notes == ["left lung field not found"] and not fields.left.any() and np.array_equal(fields.right, right_only)
    left_only = split_lungs(cv2.flip(right_only.astype(np.uint8), 1))
    assert left_only.notes == ["right lung field not found"] and left_only.left.any()
    assert split_lungs(np.zeros((64, 64), np.uint8)).notes == ["no lung field found"]
