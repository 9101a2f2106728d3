"""``convert`` from the Kaggle and PNG layouts, QC tags, resume, atomic writes, and ``split``."""

from __future__ import annotations

import gzip
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.geometry import Geometry, resize_image, resize_mask
from ptxseg.data.manifest import read_manifest
from ptxseg.data.split import make_folds, split_dataset
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path
from ptxseg.io.dicom import write_dicom
from ptxseg.io.rle import read_rle_csv

SIZE = 64


def _radiograph(seed: int, shape=(1024, 1024)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = 100 + 60 * np.sin(xx / 90.0 + seed) + rng.normal(0, 5, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def real_rows(siim_csv):
    """4 positive and 4 negative real ImageIds with all their real RLE rows (file order)."""
    with gzip.open(siim_csv, "rt") as fh:
        lines = fh.read().strip().splitlines()
    header, rows = lines[0], [tuple(x.strip() for x in r.split(",", 1)) for r in lines[1:]]
    pos = list(dict.fromkeys(i for i, r in rows if r != "-1"))[:4]
    neg = list(dict.fromkeys(i for i, r in rows if r == "-1"))[:4]
    chosen = set(pos + neg)
    return header, [(i, r) for i, r in rows if i in chosen], pos, neg


@pytest.fixture
def kaggle_tree(tmp_path, real_rows):
    """A Kaggle-layout tree: synthetic pixels in DICOMs named by real ImageIds, real RLE rows, QC cases."""
    header, rows, pos, neg = real_rows
    src = tmp_path / "siim"
    for k, image_id in enumerate(pos + neg):
        write_dicom(
            src / "dicom-images-train" / f"study{k}" / f"series{k}" / f"{image_id}.dcm",
            _radiograph(k),
            sop_instance_uid=image_id,
            patient_id=f"patient{k // 2}",  # two images per patient
        )
    # QC cases
    train = src / "dicom-images-train" / "extra"
    write_dicom(train / "9.9.1.dcm", _radiograph(20), sop_instance_uid="9.9.1", modality="CT")
    write_dicom(train / "9.9.2.dcm", _radiograph(21), sop_instance_uid="9.9.2", view_position="LL")
    write_dicom(train / "9.9.3.dcm", _radiograph(22, (200, 180)), sop_instance_uid="9.9.3")  # small, no annotation
    trunc = write_dicom(train / "9.9.4.dcm", _radiograph(23), sop_instance_uid="9.9.4")
    trunc.write_bytes(trunc.read_bytes()[:5000])
    (train / "9.9.5.dcm").write_text("not a dicom at all")
    write_dicom(src / "dicom-images-test" / "t" / "9.9.6.dcm", _radiograph(24), sop_instance_uid="9.9.6")
    lines = [header] + [f"{i}, {r}" for i, r in rows]
    lines += ["9.9.1, -1", "9.9.2, -1", "9.9.4, -1", "9.9.5, -1", "9.9.7, -1"]  # 9.9.7: annotation without image
    (src / "train-rle.csv").write_text("\n".join(lines) + "\n")
    return src, pos, neg


def test_kaggle_conversion(tmp_path, kaggle_tree, real_rows):
    src, pos, neg = kaggle_tree
    out = tmp_path / "ds"
    result = convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    m = read_manifest(out).set_index("id")
    assert len(m) == 8 + 6 + 1
    for image_id in pos + neg:
        row = m.loc[image_id]
        assert row.qc == "ok" and row.split == "train" and row.has_image == 1
        assert row.positive == int(image_id in pos)
        assert row.PatientID.startswith("patient") and row.Modality == "CR"
        image = cv2.imread(str(out / "images" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16 and image.shape == (SIZE, SIZE)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert row.mask_area == int((mask > 0).sum())
        assert (row.mask_area > 0) == (image_id in pos)
    # the stored mask is the real union mask, resized
    real = read_rle_csv(src / "train-rle.csv")
    first = pos[0]
    expected = resize_mask(real[first], Geometry.fit(1024, 1024, SIZE, "pad"), SIZE)
    stored = cv2.imread(str(out / "masks" / f"{first}.png"), cv2.IMREAD_UNCHANGED) > 0
    np.testing.assert_array_equal(stored, expected > 0)
    # QC
    assert m.loc["9.9.1"].qc == "modality" and m.loc["9.9.1"].has_image == 0
    assert "CT" in m.loc["9.9.1"].qc_reason
    assert m.loc["9.9.2"].qc == "lateral_view" and m.loc["9.9.2"].has_image == 1
    assert set(m.loc["9.9.3"].qc.split(";")) == {"small_image", "image_without_mask"}
    assert m.loc["9.9.4"].qc == "corrupt" and "9.9.4.dcm" in m.loc["9.9.4"].qc_reason
    assert m.loc["9.9.5"].qc == "not_dicom"
    assert m.loc["9.9.7"].qc == "mask_without_image" and m.loc["9.9.7"].has_image == 0
    test_row = m.loc["9.9.6"]
    assert test_row.split == "test" and test_row.qc == "ok" and pd.isna(test_row.positive)
    assert result.tag_counts["corrupt"] == 1
    assert not list(out.rglob("*.tmp*"))


def test_kaggle_with_the_whole_real_csv(tmp_path, kaggle_tree, siim_csv):
    """The real file as given: every annotation without a DICOM is tagged, none is lost."""
    src, pos, neg = kaggle_tree
    (src / "train-rle.csv").unlink()
    out = tmp_path / "ds"
    convert_dataset(src, out, rle_csv=siim_csv, options=ConvertOptions(size=SIZE), workers=2)
    m = read_manifest(out)
    orphans = m[m.qc == "mask_without_image"]
    assert len(orphans) == 12_047 - 8
    assert int(orphans.positive.sum()) == 2_669 - 4
    written = m[m.has_image == 1]
    assert set(pos + neg) <= set(written.id)


def test_resume_and_drop_qc(tmp_path, kaggle_tree):
    src, pos, _ = kaggle_tree
    out = tmp_path / "ds"
    first = convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    again = convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    # items with an image and no refusal resume; refused and annotation-only ones are simply redone
    assert again.resumed == sum(r["has_image"] == 1 for r in first.records)
    assert again.converted == len(first.records) - again.resumed
    (out / "images" / f"{pos[0]}.png").unlink()
    (out / ".convert" / "items" / f"{pos[0]}.json").unlink()
    third = convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    assert third.resumed == again.resumed - 1
    assert (out / "images" / f"{pos[0]}.png").is_file()
    assert third.converted == again.converted + 1
    with pytest.raises(PtxsegError, match="other settings"):
        convert_dataset(src, out, options=ConvertOptions(size=SIZE * 2))
    dropped = tmp_path / "dropped"
    res = convert_dataset(src, dropped, options=ConvertOptions(size=SIZE, drop_qc=True))
    m = read_manifest(dropped)
    assert (m.qc == "ok").all() and len(m) == 8 + 1  # 8 annotated + the clean test image
    assert res.dropped == 6
    assert not (dropped / "images" / "9.9.2.png").exists()


def test_interrupted_item_leaves_no_partial_file(tmp_path, kaggle_tree, monkeypatch):
    """A crash while writing an image leaves neither a half file nor a state record; a re-run completes."""
    import ptxseg.data.convert as conv

    src, pos, _ = kaggle_tree
    out = tmp_path / "ds"
    real_write = conv.write_png
    calls = {"n": 0}

    def failing_write(path, array):
        calls["n"] += 1
        if calls["n"] == 5:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"\x89PNG partial")
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-write
        return real_write(path, array)

    monkeypatch.setattr(conv, "write_png", failing_write)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    assert not list(out.rglob("*.tmp*"))
    assert not (out / "manifest.csv").exists()
    monkeypatch.setattr(conv, "write_png", real_write)
    result = convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    assert result.resumed >= 1
    for png in (out / "images").glob("*.png"):
        assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None


def _png_tree(root):
    rng = np.random.default_rng(3)
    for split, n in (("train", 6), ("test", 2)):
        (root / split / "png_images").mkdir(parents=True)
        (root / split / "png_masks").mkdir(parents=True)
        for i in range(n):
            y = int(i % 3 == 0)
            image = (rng.random((300, 300)) * 255).astype(np.uint8)
            mask = np.zeros((300, 300), np.uint8)
            if y:
                mask[40:90, 30:60] = 255
            cv2.imwrite(str(root / split / "png_images" / f"{split}_image_{i}_{y}.png"), image)
            cv2.imwrite(str(root / split / "png_masks" / f"{split}_mask_{i}_{y}.png"), mask)
    # a mask whose image is missing, and a label that disagrees with its mask
    cv2.imwrite(str(root / "train" / "png_masks" / "train_mask_99_0.png"), np.zeros((300, 300), np.uint8))
    cv2.imwrite(str(root / "train" / "png_images" / "train_image_50_1.png"), np.zeros((300, 300), np.uint8))
    cv2.imwrite(str(root / "train" / "png_masks" / "train_mask_50_1.png"), np.zeros((300, 300), np.uint8))


def test_png_layout(tmp_path):
    src = tmp_path / "png"
    _png_tree(src)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=SIZE), workers=2)
    m = read_manifest(out).set_index("id")
    assert set(m.split) == {"train", "test"}
    assert (m.loc[["0", "3"]].positive == 1).all() and (m.loc[["1", "2"]].positive == 0).all()
    assert m.loc["0"].mask_area == int((cv2.imread(str(out / "masks" / "0.png"), 0) > 0).sum()) > 0
    assert m.loc["99"].qc == "mask_without_image"
    assert m.loc["50"].qc == "label_mask_disagree" and m.loc["50"].positive == 0
    assert (m[m.split == "test"].has_image == 1).all()


def test_pad_keeps_aspect():
    image = np.ones((100, 50), np.float32)
    stored, geom = resize_image(image, 64, "pad")
    assert geom.inner_shape == (64, 32) and (geom.pad_top, geom.pad_left) == (0, 16)
    assert stored[:, :16].max() == 0 and stored[:, 16:48].min() == pytest.approx(1.0)
    stretched, g2 = resize_image(image, 64, "stretch")
    assert stretched.min() == pytest.approx(1.0) and g2.scale_col == 64 / 50


def test_tiny_lesion_survives_downscaling():
    mask = np.zeros((1024, 1024), np.uint8)
    mask[500:505, 300:303] = 1  # 15 px, far below one stored pixel at 64²
    out = resize_mask(mask, Geometry.fit(1024, 1024, 64, "pad"), 64)
    assert out.sum() >= 1
    assert not resize_mask(np.zeros_like(mask), Geometry.fit(1024, 1024, 64, "pad"), 64).any()


def test_bad_sources(tmp_path):
    with pytest.raises(PtxsegError, match="not a folder"):
        convert_dataset(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PtxsegError, match="unknown layout"):
        convert_dataset(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(PtxsegError, match="--size"):
        convert_dataset(tmp_path / "empty", tmp_path / "out", options=ConvertOptions(size=5))


# ------------------------------------------------------------------ split


def _manifest(n_patients=40, per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        k = rng.integers(1, per_patient + 1)
        for j in range(k):
            rows.append(
                {
                    "id": f"img{p}_{j}",
                    "PatientID": f"P{p}",
                    "positive": int(rng.random() < 0.25),
                    "split": "train",
                    "has_image": 1,
                    "qc": "ok",
                }
            )
    rows.append({"id": "t0", "PatientID": "T", "positive": 1, "split": "test", "has_image": 1, "qc": "ok"})
    rows.append({"id": "u0", "PatientID": "U", "positive": None, "split": "train", "has_image": 1, "qc": "ok"})
    df = pd.DataFrame(rows)
    df["positive"] = df["positive"].astype("Int64")
    return df


def test_folds_group_patients_and_stratify():
    manifest = _manifest()
    folds = make_folds(manifest, folds=5, seed=42)
    assert "t0" not in set(folds.id) and "u0" not in set(folds.id)
    assert set(folds.fold) == {0, 1, 2, 3, 4}
    assert (folds.groupby("patient").fold.nunique() == 1).all()
    overall = folds.positive.mean()
    shares = folds.groupby("fold").positive.mean()
    assert (shares - overall).abs().max() < 0.12
    sizes = folds.groupby("fold").size()
    assert sizes.max() - sizes.min() <= 6


def test_folds_deterministic_and_seeded():
    manifest = _manifest()
    a = make_folds(manifest, 5, seed=42)
    b = make_folds(manifest, 5, seed=42)
    c = make_folds(manifest, 5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.fold.equals(c.fold)


def test_folds_without_patient_ids_group_by_image():
    manifest = _manifest().drop(columns=["PatientID"])
    folds = make_folds(manifest, 4, seed=1)
    assert folds.patient.nunique() == len(folds)


def test_fold_errors():
    with pytest.raises(PtxsegError, match="at least 2"):
        make_folds(_manifest(), folds=1)
    with pytest.raises(PtxsegError, match="patients"):
        make_folds(_manifest(n_patients=3), folds=5)


def test_split_writes_folds_csv(tmp_path, kaggle_tree):
    src, pos, neg = kaggle_tree
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=SIZE))
    table = split_dataset(out, folds=2, seed=0)
    on_disk = pd.read_csv(out / "folds.csv", dtype={"id": str, "patient": str})
    assert list(on_disk.columns) == ["id", "patient", "positive", "fold"]
    # labelled training images only: 9.9.3 has no annotation, 9.9.6 is test, 9.9.1/4/5 were refused
    assert set(on_disk.id) == set(pos + neg) | {"9.9.2"}
    assert (on_disk.groupby("patient").fold.nunique() == 1).all()
    assert len(table) == len(on_disk)
    assert json.loads((out / ".convert" / "params.json").read_text())["size"] == SIZE


def test_a_kaggle_tree_with_lung_masks_keeps_them_sided_in_the_dataset(tmp_path):
    from ptxseg.io.images import read_image, read_mask
    from ptxseg.synth.dataset import synth_dataset

    src = tmp_path / "src"
    synth_dataset(src, 6, size=96, seed=1, layout="kaggle", workers=1)
    assert len(list((src / "lung-masks").glob("*.png"))) == 6
    out = tmp_path / "ds"
    convert_dataset(src, out, rle_shape=(96, 96), options=ConvertOptions(size=64), workers=1)
    manifest = read_manifest(out).set_index("id")
    for image_id, row in manifest.iterrows():
        lab = np.rint(read_image(out / "lungs" / f"{image_id}.png", radiograph=False) * 255).astype(int)
        source = read_mask(src / "lung-masks" / f"{image_id}.png") > 0
        assert set(np.unique(lab)) == {0, 1, 2}
        # the right lung (1) on the image's left; the stored area is the source's, scaled to the stored grid
        assert np.nonzero(lab == 1)[1].mean() < np.nonzero(lab == 2)[1].mean()
        assert row["lung_area"] == (lab > 0).sum()
        assert (lab > 0).sum() == pytest.approx(source.sum() * (64 / 96) ** 2, rel=0.1)
