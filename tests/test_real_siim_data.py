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
    # positive_share counts an unlabelled film (-1) with the negatives, never as a positive
    assert sum(y == 1 for y in drawn) == (split.train_labels == 1).sum()


def test_training_refuses_unlabelled_films_without_a_classifier_head(dataset, tmp_path):
    from ptxseg.errors import PtxsegError
    from ptxseg.train.engine import train

    cfg = load_config("siim_real_lite0_256", overrides=["model.aux_classifier=false", "model.pretrained=null", "data.size=64"])
    with pytest.raises(PtxsegError, match="unlabelled training films train only the classifier head"):
        train(cfg, dataset, tmp_path / "run")
