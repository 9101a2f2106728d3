"""Quantification: constructed masks whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ptxseg.measure.quantify import quantify, scale_spacing, severity


def _lungs(h: int = 100, w: int = 120):
    """Patient's right lung on the image's left (cols 10–49), left lung on the image's right (cols 70–109); 80 rows each."""
    right = np.zeros((h, w), bool)
    left = np.zeros((h, w), bool)
    right[10:90, 10:50] = True  # 3,200 px
    left[10:90, 70:110] = True  # 3,200 px
    return right, left


def test_bilateral_and_multiple_lesions_per_side():
    right, left = _lungs()
    ptx = np.zeros_like(right)
    ptx[10:20, 10:50] = True  # right apex: 400 px
    ptx[60:70, 40:50] = True  # right, second lesion: 100 px
    ptx[10:90, 100:110] = True  # left lateral strip: 800 px
    q = quantify(ptx, right, left, spacing_mm=(0.5, 0.25))
    assert q["right"] == {
        "area_px": 500,
        "area_mm2": 500 * 0.125,
        "lung_area_px": 3200,
        "lung_area_mm2": 3200 * 0.125,
        "ratio_pct": round(500 / 3200 * 100, 2),  # 15.625 % shown to 0.01 %
        "severity": "mild",
        "lesions": 2,
    }
    assert q["left"]["area_px"] == 800 and q["left"]["ratio_pct"] == 25.0 and q["left"]["severity"] == "moderate"
    assert q["left"]["lesions"] == 1 and q["unassigned_px"] == 0
    assert [les["rule"] for les in q["lesions"]] == ["centroid"] * 3


def test_centroid_outside_both_lungs_goes_to_the_nearest():
    right, left = _lungs()
    ptx = np.zeros_like(right)
    ptx[40:50, 52:56] = True  # in the gap, centroid at col 53.5: 4 px from the right lung, 16 from the left
    ptx[95:99, 80:84] = True  # below the left lung
    q = quantify(ptx, right, left)
    assert q["right"]["area_px"] == 40 and q["left"]["area_px"] == 16
    assert [(les["side"], les["rule"]) for les in q["lesions"]] == [("right", "nearest"), ("left", "nearest")]
    assert q["right"]["area_mm2"] is None  # no spacing known


def test_empty_masks_and_missing_lungs():
    right, left = _lungs()
    q = quantify(np.zeros_like(right), right, left)
    for side in ("right", "left"):
        assert q[side]["area_px"] == 0 and q[side]["ratio_pct"] == 0.0 and q[side]["severity"] == "none" and q[side]["lesions"] == 0
    ptx = np.zeros_like(right)
    ptx[20:30, 20:30] = True
    no_left = quantify(ptx, right, np.zeros_like(left))  # a missing lung: unknown ratio, not "none"
    assert no_left["left"]["ratio_pct"] is None and no_left["left"]["severity"] is None and no_left["right"]["area_px"] == 100
    nothing = quantify(ptx, np.zeros_like(right), np.zeros_like(left))
    assert nothing["unassigned_px"] == 100 and nothing["lesions"][0]["rule"] == "none"
    with pytest.raises(ValueError, match="lung_left has shape"):
        quantify(ptx, right, left[:50])


def test_severity_boundaries_and_spacing_scaling():
    assert [severity(r) for r in (0.0, 0.1, 19.99, 20.0, 40.0, 40.01, 100.0)] == [
        "none",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "severe",
        "severe",
    ]
    assert severity(30.0, bounds=(10.0, 25.0)) == "severe" and severity(None) is None
    right, left = _lungs()
    ptx = np.zeros_like(right)
    ptx[10:90, 10:30] = True  # half the right lung
    q = quantify(ptx, right, left, bounds=(10.0, 45.0))
    assert q["right"]["ratio_pct"] == 50.0 and q["right"]["severity"] == "severe"
    assert scale_spacing((0.14, 0.14), (1024, 1024), (256, 256)) == pytest.approx((0.56, 0.56))
    assert scale_spacing(None, (1024, 1024), (256, 256)) is None
