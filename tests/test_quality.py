"""The quality gate before triage, on real human lung-field annotations (``lungs_real``, Shenzhen) and phantoms:
each flag raised by the change that should raise it, and by nothing a well-taken film does."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from ptxseg.measure.lung_sides import side_labels
from ptxseg.measure.quality import GATE_FLAGS, GateLimits, quality_gate
from tests.conftest import shared_path


def _sides(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = side_labels(mask)
    return lab == 1, lab == 2


@pytest.fixture(scope="module")
def real_fields() -> list[tuple[str, np.ndarray]]:
    """Lung-field masks (bool, source size) of 4 adult and 4 paediatric real radiographs and 3 Shenzhen films."""
    real = shared_path("lungs_real")
    table = pd.read_csv(real / "manifest.csv", dtype=str)
    ids = [*table[table.age_group == "adult"].id[:4], *table[table.age_group == "child"].id[:4]]
    masks = [(i, cv2.imread(str(real / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE) == 255) for i in ids]
    shenzhen = shared_path("lungs", "lungmasks")
    masks += [(p.stem, cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127) for p in sorted(shenzhen.glob("*.png"))[:3]]
    return masks


def _eligible(fields):
    return [(i, m) for i, m in fields if quality_gate(*_sides(m)).eligible]


def test_well_taken_real_films_pass(real_fields):
    passed = _eligible(real_fields)
    assert len(passed) >= 8, [(i, quality_gate(*_sides(m)).reasons) for i, m in real_fields]
    for _, m in passed:
        gate = quality_gate(*_sides(m))
        assert gate.flags == [] and gate.reasons == []
        assert 0.04 < gate.measures["right_share"] < 0.45 and 0.5 < gate.measures["area_ratio"] <= 1


def test_cut_films_are_flagged(real_fields):
    for image_id, m in _eligible(real_fields):
        rows = np.flatnonzero(m.any(1))
        top, bottom = rows[0], rows[-1]
        apex_cut = m[top + (bottom - top) // 4 :]  # the top quarter of the lungs cropped away
        base_cut = m[: bottom - (bottom - top) // 5]  # the costophrenic angles below the film
        for cut, edge in ((apex_cut, "top"), (base_cut, "bottom")):
            gate = quality_gate(*_sides(cut))
            assert gate.eligible is False and "lung_cut_off" in gate.flags, image_id
            assert any(edge in r for r in gate.reasons), (image_id, gate.reasons)
        cols = np.flatnonzero(m.any(0))
        side_cut = m[:, cols[0] + (cols[-1] - cols[0]) // 8 :]  # the right chest wall outside the film
        gate = quality_gate(*_sides(side_cut))
        assert "lung_cut_off" in gate.flags and any("right lung reaches the left edge" in r for r in gate.reasons), image_id


def test_rotated_and_one_sided_films_are_flagged(real_fields):
    for image_id, m in _eligible(real_fields):
        h, w = m.shape
        big = np.zeros((2 * h, 2 * w), np.uint8)  # room to rotate without cutting the lungs
        big[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = m
        turned = cv2.warpAffine(big, cv2.getRotationMatrix2D((w, h), 35, 1.0), (2 * w, 2 * h), flags=cv2.INTER_NEAREST) > 0
        gate = quality_gate(*_sides(turned))
        assert "rotated" in gate.flags and abs(gate.measures["tilt_deg"]) > 20, (image_id, gate.measures)
        right, left = _sides(m)
        one = quality_gate(right, np.zeros_like(left))
        assert one.flags == ["lung_missing"] and one.reasons == ["the left lung field was not found"]
        shrunk = right.copy()
        shrunk[: int(np.flatnonzero(right.any(1)).mean())] = False  # half a lung: a collapsed field segmentation
        assert "rotated" in quality_gate(shrunk, left, limits=GateLimits(min_area_ratio=0.7)).flags


def test_lungs_too_small_for_the_image_and_header_views(real_fields):
    image_id, m = _eligible(real_fields)[0]
    h, w = m.shape
    canvas = np.zeros((4 * h, 4 * w), bool)  # a film mostly of something else: lungs a sliver of the image
    canvas[:h, :w] = m
    gate = quality_gate(*_sides(canvas))
    assert "lung_area_implausible" in gate.flags and gate.eligible is False
    right, left = _sides(m)
    lateral = quality_gate(right, left, ["lateral_view"])
    assert lateral.eligible is False and lateral.flags == ["not_frontal"]
    assert quality_gate(right, left, ["non_chest_body_part", "small_image"]).flags == ["non_chest"]
    assert quality_gate(right, left, ["small_image"]).eligible is True  # a warning the gate does not act on
    none = quality_gate(None, None)
    assert none.eligible is None and none.flags == ["no_lung_model"]
    assert quality_gate(None, None, ["lateral_view"]).eligible is False


def test_phantom_lungs_pass_and_every_flag_is_documented(tmp_path):
    from ptxseg.synth.phantom import make_phantom

    passed = 0
    for seed in range(6):
        ph = make_phantom(seed, 0, 256, positive=False)
        passed += bool(quality_gate(ph.lung_right > 0, ph.lung_left > 0).eligible)
    assert passed >= 5
    assert all(GATE_FLAGS[f] for f in ("not_frontal", "lung_missing", "lung_area_implausible", "lung_cut_off", "rotated"))


@pytest.fixture(scope="module")
def shipped():
    from ptxseg.artifacts.shipped import shipped_lung_model
    from ptxseg.infer.predictor import Predictor

    path = shipped_lung_model()
    if path is None:
        pytest.skip("no shipped lung-field model in this installation (src/ptxseg/weights/lungs)")
    return Predictor([path])


def _gate_of(predictor, image, warnings=()):
    from ptxseg.measure.lung_sides import split_lungs

    fields = split_lungs(predictor.predict([image])[0].mask(predictor.operating_point))
    return quality_gate(fields.right, fields.left, list(warnings))


def test_the_shipped_model_gates_real_films_and_their_cut_and_rotated_versions(shipped):
    from ptxseg.io.images import read_image

    films = sorted(shared_path("lungs", "lungs").glob("*.png"))[:4]
    for path in films:
        image = read_image(path)
        gate = _gate_of(shipped, image)
        assert gate.eligible, (path.name, gate.reasons)
        h, w = image.shape
        cut = image[int(0.3 * h) :]  # the apices above the film
        assert "lung_cut_off" in _gate_of(shipped, cut).flags, path.name
        big = np.zeros((2 * h, 2 * w), np.float32)
        big[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = image
        turned = cv2.warpAffine(big, cv2.getRotationMatrix2D((w, h), 35, 1.0), (2 * w, 2 * h), flags=cv2.INTER_LINEAR)
        assert "rotated" in _gate_of(shipped, turned).flags, path.name
        assert _gate_of(shipped, image, ["lateral_view"]).flags[0] == "not_frontal"
