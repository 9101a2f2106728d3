"""Real SIIM films as a user ingests them: JPEG/PNG/DICOM named by ImageId with the RLE file, unlabelled films
kept with an unknown label, folds stratified by lesion size with the unlabelled films always training, and the
training dataset ignoring an unlabelled film's mask while its classifier target stays empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptxseg.cli import main
from ptxseg.config import load_config
from ptxseg.data.manifest import read_manifest
from ptxseg.data.split import ALWAYS_TRAIN, UNKNOWN, fold_split, make_folds
from ptxseg.train.data import SegmentationDataset, build_sampler

from .conftest import shared_path


@pytest.fixture(scope="module")
def real_source(tmp_path_factory):
    """A Kaggle-layout tree of symlinks: 9 train_real films (JPEG, PNG and DICOM, with both labels), 3 unlabelled
    in-domain films (320² JPEG, no RLE row) and the SIIM RLE file."""
    train = shared_path("siim", "train_real")
    unlabelled = shared_path("siim", "unlabeled_train")
    table = pd.read_csv(train / "manifest.csv")
    picks = pd.concat(
        [
            table[(table["format"] == "jpeg") & table["positive"]].head(4),
            table[(table["format"] == "png") & table["positive"]].head(2),
            table[(table["format"] == "dicom") & ~table["positive"]].head(3),
        ]
    )
    src = tmp_path_factory.mktemp("siim_src")
    (src / "train").mkdir()
    (src / "unlabelled").mkdir()
    for rel in picks["file"]:
        (src / "train" / rel.split("/")[-1]).symlink_to(train / rel)
    for rel in pd.read_csv(unlabelled / "manifest.csv")["file"].head(3):
        (src / "unlabelled" / rel.split("/")[-1]).symlink_to(unlabelled / rel)
    (src / "train-rle.csv.gz").symlink_to(shared_path("siim", "train-rle.csv.gz"))
    return src, picks


@pytest.fixture(scope="module")
def dataset(real_source, tmp_path_factory):
    src, _ = real_source
    out = tmp_path_factory.mktemp("siim") / "data"
    assert main(["convert", str(src), str(out), "--size", "128", "--workers", "1", "-q"]) == 0
    assert main(["split", str(out), "--folds", "3", "--size-strata", "3", "--unlabelled"]) == 0  # (each xdist worker has its own)
    return out


def test_convert_reads_jpeg_png_and_dicom_films_named_by_image_id(dataset, real_source):
    _, picks = real_source
    m = read_manifest(dataset).set_index("id")
    films = m[m["has_image"] == 1]
    assert len(films) == 12
    labelled = films.loc[list(picks["ImageId"])]
    assert (labelled["positive"].astype(int).to_numpy() == picks["positive"].astype(int).to_numpy()).all()
    # the stored masks are the RLE rows, downscaled: the 1024² areas reproduce the data's manifest within resampling
    scale = (128 / 1024) ** 2
    for image_id, area in zip(picks["ImageId"], picks["mask_area_px"], strict=True):
        assert abs(labelled.loc[image_id, "mask_area"] - area * scale) <= max(3, 0.15 * area * scale)
    unknown = films[films["positive"].isna()]
    assert len(unknown) == 3 and unknown["qc"].str.contains("image_without_mask").all()
    assert labelled.loc[picks["ImageId"][picks["format"] == "dicom"], "Modality"].eq("CR").all()  # DICOM metadata read


def test_split_keeps_unlabelled_films_training_in_every_fold(dataset):
    assert main(["split", str(dataset), "--folds", "3", "--size-strata", "3", "--unlabelled"]) == 0
    folds = pd.read_csv(dataset / "folds.csv", dtype={"id": str})
    unlabelled = folds[folds["fold"] == ALWAYS_TRAIN]
    assert len(unlabelled) == 3 and (unlabelled["positive"] == UNKNOWN).all()
    assert sorted(folds.loc[folds["fold"] >= 0, "fold"].unique()) == [0, 1, 2]
    for k in range(3):
        split = fold_split(dataset, k, create=False)
        assert set(unlabelled["id"]) <= set(split.train_ids) and not set(unlabelled["id"]) & set(split.val_ids)
    without = make_folds(read_manifest(dataset), 3)
    assert len(without) == 9 and (without["fold"] >= 0).all()  # default: unlabelled films left out


def test_size_strata_spread_small_and_large_lesions_over_the_folds():
    n = 60
    manifest = pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(n)],
            "split": "train",
            "has_image": 1,
            "positive": [1] * 54 + [0] * 6,
            "mask_area": [*range(100, 5500, 100), *[0] * 6],
        }
    )
    folds = make_folds(manifest, 3, size_strata=3)
    pos = folds[folds["positive"] == 1].merge(manifest[["id", "mask_area"]], on="id")
    terciles = pd.qcut(pos["mask_area"], 3, labels=False)
    counts = pd.crosstab(pos["fold"], terciles)
    assert (counts.to_numpy() == 6).all()  # 18 small, 18 medium, 18 large: 6 of each per fold


def test_unlabelled_films_train_only_the_classifier(dataset):
    cfg = load_config("siim_real_lite0_256", overrides=["data.size=128"])
    split = fold_split(dataset, 0, create=False)
    unlabelled = [i for i, y in zip(split.train_ids, split.train_labels, strict=True) if y == UNKNOWN]
    from ptxseg.data.preprocess import Preprocessing

    pp = Preprocessing(stored_size=128, size=128)
    ds = SegmentationDataset(dataset, split.train_ids, pp, augment=cfg.augment, train=True, unlabelled=unlabelled)
    for i, sid in enumerate(split.train_ids):
        _, target = ds[i]
        if sid in unlabelled:
            assert (target == -1).all()  # every pixel unknown: no mask loss, and the head's target "empty"
        else:
            assert set(np.unique(target.numpy())) <= {0.0, 1.0}
    sampler = build_sampler(cfg, split.train_labels, 0.5, seed=0, num_replicas=1, rank=0)
    drawn = [split.train_labels[i] for i in sampler]
    # positive_share counts an unlabelled film (-1) with the negatives, never as a positive: every positive once,
    # as many films again from the negatives and unlabelled films (were -1 a positive, the epoch would differ)
    n_pos = int((split.train_labels == 1).sum())
    assert sum(y == 1 for y in drawn) == n_pos and len(drawn) == n_pos + min(n_pos, len(split.train_labels) - n_pos)


def test_training_refuses_unlabelled_films_without_a_classifier_head(dataset, tmp_path):
    from ptxseg.errors import PtxsegError
    from ptxseg.train.engine import train

    cfg = load_config("siim_real_lite0_256", overrides=["model.aux_classifier=false", "model.pretrained=null", "data.size=64"])
    with pytest.raises(PtxsegError, match="unlabelled training films train only the classifier head"):
        train(cfg, dataset, tmp_path / "run")


def test_convert_jpeg_quality_puts_every_source_through_one_last_compression(real_source, dataset, tmp_path):
    from ptxseg.data.geometry import resize_image
    from ptxseg.io.images import jpeg_roundtrip, read_image, read_radiograph

    src, picks = real_source
    out = tmp_path / "q89"
    assert main(["convert", str(src), str(out), "--size", "128", "--jpeg-quality", "89", "--workers", "1", "-q"]) == 0
    dicom = picks[picks["format"] == "dicom"]["ImageId"].iloc[0]
    source, _ = read_radiograph(src / "train" / f"{dicom}.dcm")
    expected = jpeg_roundtrip(resize_image(source, 128, "pad")[0], 89)
    stored = read_image(out / "images" / f"{dicom}.png")
    assert np.abs(stored - expected).max() < 1e-4  # the lossless DICOM now carries JPEG's 8×8 blocks like the others
    plain = read_image(dataset / "images" / f"{dicom}.png")
    assert 0 < np.abs(stored - plain).mean() < 0.01
    assert main(["convert", str(src), str(tmp_path / "bad"), "--jpeg-quality", "0", "-q"]) == 2


def test_jpeg_roundtrip_is_lossy_and_bounded():
    from ptxseg.io.images import jpeg_roundtrip

    rng = np.random.default_rng(0)
    image = cv2_blur(rng.random((96, 96)).astype(np.float32))
    low, high = jpeg_roundtrip(image, 30), jpeg_roundtrip(image, 95)
    assert low.dtype == np.float32 and low.shape == image.shape
    assert np.abs(high - image).mean() < np.abs(low - image).mean() < 0.05


def cv2_blur(a):
    import cv2

    return cv2.GaussianBlur(a, (0, 0), 2)


def test_a_negative_dicom_and_its_jpeg_re_encode_get_the_same_answer(dataset, real_source, tmp_path):
    """The format shortcut, on a tiny model trained with the real recipe: the lossless DICOM and the same film as a
    lossy JPEG (quality 75, as the positives were stored) must reach the network alike and get the same answer."""
    import cv2
    import pydicom

    from ptxseg.infer.predictor import Predictor
    from ptxseg.io.images import read_radiograph
    from ptxseg.train.engine import train

    src, picks = real_source
    cfg = load_config(
        "siim_real_lite0_256",
        overrides=["data.size=64", "training.epochs=2", "training.batch_size=4", "data.workers=0", "postprocess.tune=false"],
    )
    run = tmp_path / "run"
    train(cfg, dataset, run, fold=0)
    predictor = Predictor([run])
    for image_id in picks[picks["format"] == "dicom"]["ImageId"]:
        dicom = src / "train" / f"{image_id}.dcm"
        jpeg = tmp_path / f"{image_id}.jpg"
        cv2.imwrite(str(jpeg), pydicom.dcmread(dicom).pixel_array, [cv2.IMWRITE_JPEG_QUALITY, 75])
        a, b = read_radiograph(dicom)[0], read_radiograph(jpeg)[0]
        assert a.shape == b.shape and np.abs(a - b).mean() < 0.01  # the same picture, whatever the file format
        pa, pb = predictor.predict([a, b])
        assert pa.cls_prob is not None and abs(pa.cls_prob - pb.cls_prob) < 0.05
        assert np.abs(pa.prob.max() - pb.prob.max()) < 0.05


def test_only_a_pneumothorax_model_treats_unknown_labels_as_unlabelled_films():
    from ptxseg.train.data import unlabelled_ids

    ids, labels = ["a", "b", "c"], np.array([UNKNOWN, 1, 0])
    assert unlabelled_ids(ids, labels, "pneumothorax") == ["a"]
    # a lung-field dataset has no pneumothorax labels at all (every row -1): its lung masks must still train
    assert unlabelled_ids(ids, np.full(3, UNKNOWN), "lungs") == []
