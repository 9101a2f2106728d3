"""Phantoms: anatomy and ground truth, determinism, prevalence, layouts, and the Kaggle round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.manifest import read_manifest
from ptxseg.errors import PtxsegError
from ptxseg.io.rle import read_rle_csv
from ptxseg.synth import make_phantom
from ptxseg.synth.dataset import is_positive, patient_of, synth_dataset


def test_phantom_arrays_and_truth():
    p = make_phantom(seed=0, index=1, size=256, positive=True)
    assert p.image.shape == (256, 256) and p.image.dtype == np.float32
    assert 0.0 <= p.image.min() and p.image.max() <= 1.0
    for m in (p.ptx, p.lung_right, p.lung_left):
        assert m.shape == (256, 256) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert p.positive and p.ptx.sum() > 0
    assert not (p.ptx & ~(p.lung_right | p.lung_left)).any()  # inside the full lung fields
    assert not (p.lung_right & p.lung_left).any()
    # radiological convention: the patient's right lung is on the image's left
    assert np.nonzero(p.lung_right)[1].mean() < 128 < np.nonzero(p.lung_left)[1].mean()
    for side, lung in (("right", p.lung_right), ("left", p.lung_left)):
        assert p.ratio[side] == pytest.approx(100 * (p.ptx & lung).sum() / lung.sum())
    negative = make_phantom(seed=0, index=1, size=256, positive=False)
    assert not negative.ptx.any() and negative.side == "none" and negative.ratio == {"right": 0.0, "left": 0.0}


def test_lungs_darker_than_mediastinum_and_abdomen():
    p = make_phantom(seed=4, index=2, size=256, positive=False)
    lungs = (p.lung_right | p.lung_left).astype(bool)
    lung_mean = p.image[lungs].mean()
    rows = np.flatnonzero(lungs.any(1))
    centre = p.image[rows[len(rows) // 2] - 10 : rows[len(rows) // 2] + 10, 122:134].mean()
    below = p.image[rows.max() + 20 : rows.max() + 40, 60:196].mean()
    assert lung_mean < centre - 0.1 and lung_mean < below - 0.1


@pytest.mark.slow
def test_free_air_is_darker_and_without_markings():
    """On large collapses, away from the edges: free air is darker than the aerated lung of that side and
    carries less fine structure (no vascular markings), the image noise being the same in both."""
    darker = smoother = checked = 0
    for i in range(80):
        p = make_phantom(seed=5, index=i, size=512, positive=True)
        if max(p.ratio.values()) < 25:
            continue
        side = p.lung_right if p.ratio["right"] >= p.ratio["left"] else p.lung_left
        kernel = np.ones((13, 13), np.uint8)
        air = cv2.erode(p.ptx, kernel).astype(bool)
        lung = cv2.erode(side & (1 - p.ptx), kernel).astype(bool)
        detail = np.abs(p.image - cv2.GaussianBlur(p.image, (0, 0), 4))
        darker += p.image[air].mean() < p.image[lung].mean() - 0.02
        smoother += detail[air].mean() < 0.85 * detail[lung].mean()
        checked += 1
        if checked == 6:
            break
    assert checked == 6 and darker == 6 and smoother >= 4


def test_same_patient_shares_anatomy():
    seed = 0
    pair = next(i for i in range(0, 200, 2) if patient_of(seed, i + 1) == i)
    a = make_phantom(seed, pair, 128, positive=False, patient=patient_of(seed, pair))
    b = make_phantom(seed, pair + 1, 128, positive=False, patient=patient_of(seed, pair + 1))
    c = make_phantom(seed, pair + 2, 128, positive=False, patient=patient_of(seed, pair + 2))
    # different pose per film, so compare lung areas rather than pixels
    area = lambda p: (p.lung_right.sum(), p.lung_left.sum())  # noqa: E731
    assert np.allclose(area(a), area(b), rtol=0.15)
    assert not np.array_equal(a.image, b.image)
    assert patient_of(seed, pair + 2) != pair and area(c) != area(a)


def test_prevalence():
    flags = [is_positive(7, i, 0.22) for i in range(5000)]
    assert np.mean(flags) == pytest.approx(0.22, abs=0.015)
    assert not any(is_positive(7, i, 0.0) for i in range(200))


def test_canonical_layout_deterministic_across_workers(tmp_path):
    a = synth_dataset(tmp_path / "a", 10, size=96, seed=3, positive_fraction=0.5, workers=1)
    synth_dataset(tmp_path / "b", 10, size=96, seed=3, positive_fraction=0.5, workers=2)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 3 * 10 + 2  # images, masks, lungs; manifest.csv, dataset.json
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = synth_dataset(tmp_path / "c", 10, size=96, seed=4, positive_fraction=0.5)
    assert [r["id"] for r in other] != [r["id"] for r in a]
    m = read_manifest(tmp_path / "a").set_index("id")
    assert list(m.positive) == [int(is_positive(3, i, 0.5)) for i in range(10)]
    for image_id, row in m.iterrows():
        mask = cv2.imread(str(tmp_path / "a" / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED) > 0
        lungs = cv2.imread(str(tmp_path / "a" / "lungs" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(tmp_path / "a" / "images" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16 and image.shape == (96, 96)
        assert row.mask_area == mask.sum() and bool(row.positive) == mask.any()
        assert not (mask & (lungs == 0)).any()
        for side, label in (("right", 1), ("left", 2)):
            lung = lungs == label
            assert row[f"lung_area_{side}"] == lung.sum()
            assert row[f"ratio_{side}"] == pytest.approx(100 * (mask & lung).sum() / lung.sum(), abs=1e-3)


def test_png_layout(tmp_path):
    rows = synth_dataset(tmp_path, 6, size=64, seed=1, positive_fraction=0.5, layout="png")
    for r in rows:
        y = r["positive"]
        assert (tmp_path / "train" / "png_images" / f"train_image_{r['index']}_{y}.png").is_file()
        assert (tmp_path / "train" / "png_masks" / f"train_mask_{r['index']}_{y}.png").is_file()
    converted = convert_dataset(tmp_path, tmp_path / "ds", options=ConvertOptions(size=64))
    assert all(r["qc"] == "small_image" and r["has_image"] == 1 for r in converted.records)


def test_kaggle_layout_round_trips_through_convert(tmp_path):
    src = tmp_path / "kaggle"
    rows = synth_dataset(src, 12, size=128, seed=2, positive_fraction=0.5, layout="kaggle")
    rle = read_rle_csv(src / "train-rle.csv", shape=(128, 128))
    assert rle.fmt == "relative" and len(rle) == 12
    out = tmp_path / "ds"
    convert_dataset(src, out, rle_shape=(128, 128), options=ConvertOptions(size=128), workers=2)
    m = read_manifest(out).set_index("id")
    truth = pd.read_csv(src / "phantoms.csv", dtype={"id": str}).set_index("id")
    assert set(m.index) == set(truth.index) == {r["id"] for r in rows}
    assert (m.qc == "small_image").all() and (m.Modality == "CR").all()  # 128 px < 256: tagged, kept
    for image_id, row in m.iterrows():
        assert row.positive == truth.loc[image_id, "positive"]
        assert row.mask_area == truth.loc[image_id, "mask_area"]  # same size: masks unchanged
        assert row.PatientID == truth.loc[image_id, "PatientID"]
        assert row.PixelSpacingRow == pytest.approx(truth.loc[image_id, "PixelSpacingRow"], rel=1e-5)
    assert m.PatientID.nunique() < len(m)  # some patients have two films


def test_masks_from_real_siim(tmp_path, siim_csv):
    rows = synth_dataset(tmp_path, 8, size=128, seed=0, positive_fraction=1.0, masks_from=siim_csv)
    assert all(r["positive"] for r in rows)
    assert sum(r["mask_source"] == "siim" for r in rows) >= 6  # rare shapes that miss the lung fall back
    m = read_manifest(tmp_path).set_index("id")
    for image_id in m.index:
        mask = cv2.imread(str(tmp_path / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED) > 0
        lungs = cv2.imread(str(tmp_path / "lungs" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.any() and not (mask & (lungs == 0)).any()


def test_bad_options(tmp_path):
    with pytest.raises(PtxsegError, match="--positive-fraction"):
        synth_dataset(tmp_path, 3, positive_fraction=1.5)
    with pytest.raises(PtxsegError, match="--layout"):
        synth_dataset(tmp_path, 3, layout="dicom")
    with pytest.raises(PtxsegError, match="--size"):
        synth_dataset(tmp_path, 3, size=16)
    with pytest.raises(PtxsegError, match="-n"):
        synth_dataset(tmp_path, 0)


def test_test_split_by_patient_through_convert(tmp_path):
    rows = synth_dataset(tmp_path / "k", 24, size=64, seed=2, layout="kaggle", test_fraction=0.3)
    test_rows = [r for r in rows if r["split"] == "test"]
    assert 0 < len(test_rows) < 24
    patients = {r["PatientID"]: r["split"] for r in rows}
    assert all(patients[r["PatientID"]] == r["split"] for r in rows)  # a patient never spans splits
    assert len(list((tmp_path / "k" / "dicom-images-test").rglob("*.dcm"))) == len(test_rows)
    result = convert_dataset(tmp_path / "k", tmp_path / "ds", rle_shape=(64, 64), options=ConvertOptions(size=64))
    manifest = read_manifest(tmp_path / "ds")
    got = dict(zip(manifest["id"], manifest["split"], strict=True))
    assert all(got[r["id"]] == r["split"] for r in rows) and result.records
    pos_test = [r["id"] for r in test_rows if r["positive"]]
    assert all((tmp_path / "ds" / "masks" / f"{i}.png").is_file() for i in pos_test)  # test masks kept for evaluation
    canon = synth_dataset(tmp_path / "c", 24, size=64, seed=2, test_fraction=0.3)
    assert [r["split"] for r in canon] == [r["split"] for r in rows]
