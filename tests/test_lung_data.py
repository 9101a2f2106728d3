"""Lung-field annotations into a canonical dataset (the ``folders`` layout), unknown pixels through training and
scoring, and folds that keep a stratum's share: on generated image + mask folders and on the real ``lungs_real``."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.manifest import read_manifest
from ptxseg.data.preprocess import Preprocessing
from ptxseg.data.split import fold_split, split_dataset
from ptxseg.errors import PtxsegError
from ptxseg.io.images import read_image
from ptxseg.losses import build_loss, drop_ignored, list_losses
from ptxseg.measure.lung_sides import side_labels
from tests.conftest import shared_path


def _labels(path) -> np.ndarray:
    return np.rint(read_image(path, radiograph=False) * 255).astype(int)


def _folders(root, n=12, shape=(300, 240)):
    """images/<id>.png + masks/<id>.png (0 / 127 unknown / 255 lung) + manifest.csv with patients and a stratum."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = (rng.random(shape) * 200).astype(np.uint8)
        mask = np.zeros(shape, np.uint8)
        mask[60:240, 20:100] = 255  # image left: the patient's right lung
        mask[60:240, 140:225] = 255
        if i % 3 == 0:
            mask[200:240, 20:60] = 127  # a device the annotator left unknown
        cv2.imwrite(str(root / "images" / f"img{i:02d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"img{i:02d}.png"), mask)
        rows.append(
            {
                "id": f"img{i:02d}",
                "patient": f"p{i // 2}",
                "age_group": "adult" if i < 4 else "child",
                "view": "PA",
                "source": "x",
                "licence": "CC BY 4.0" if i % 2 else "CC BY 3.0",
            }
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return rows


def test_side_labels_keep_every_pixel_and_put_the_right_lung_on_the_image_left():
    mask = np.zeros((100, 100), np.uint8)
    mask[20:80, 10:40] = 1
    mask[20:80, 60:90] = 1
    mask[85:88, 12:15] = 1  # a fragment under the right lung: smaller than split_lungs keeps
    labels = side_labels(mask)
    assert (labels > 0).sum() == mask.sum()
    assert (labels[20:80, 10:40] == 1).all() and (labels[20:80, 60:90] == 2).all() and (labels[85:88, 12:15] == 1).all()
    merged = np.zeros((100, 100), np.uint8)
    merged[20:80, 10:90] = 1  # one field across the midline: split, both sides present
    m = side_labels(merged)
    assert set(np.unique(m)) == {0, 1, 2} and (m[:, :30] != 2).all() and (m[:, 70:] != 1).all()
    assert not side_labels(np.zeros((10, 10), np.uint8)).any()


def test_folders_layout_stores_sided_lungs_unknown_pixels_and_source_columns(tmp_path):
    src = tmp_path / "src"
    _folders(src)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=128, target="lungs", stratify="age_group"), workers=1)
    m = read_manifest(out).set_index("id")
    assert len(m) == 12 and (m.has_image == 1).all() and m.positive.isna().all()  # no pneumothorax label invented
    assert (m.PatientID == [f"p{i // 2}" for i in range(12)]).all() and (m.ViewPosition == "PA").all()
    assert (m.stratum == ["adult"] * 4 + ["child"] * 8).all() and (m.source_source == "x").all()
    assert (m.source == [f"images/img{i:02d}.png" for i in range(12)]).all()  # convert's own column kept
    lab = _labels(out / "lungs" / "img01.png")
    # letterboxed 300×240 → 128: scale 128/300, 12 columns of padding left and right
    assert lab.shape == (128, 128) and set(np.unique(lab)) == {0, 1, 2}
    cols_r, cols_l = np.nonzero(lab == 1)[1], np.nonzero(lab == 2)[1]
    assert cols_r.max() < cols_l.min()
    assert m.loc["img01"].lung_area == (lab > 0).sum()
    assert not (out / "ignore" / "img01.png").exists() and pd.isna(m.loc["img01"].ignore_area)
    ign = _labels(out / "ignore" / "img00.png") > 0
    assert m.loc["img00"].ignore_area == ign.sum() > 0
    rows, cols = np.nonzero(ign)
    # source rows 200-240, columns 20-60 → stored rows 85-102, columns 20-38
    assert 83 <= rows.min() and rows.max() <= 103 and 19 <= cols.min() and cols.max() <= 39
    # the unknown region is not lung (its 127 pixels are not read as foreground) ...
    assert (_labels(out / "lungs" / "img00.png")[ign] == 0).mean() > 0.9


def test_folds_keep_strata_and_patients_and_lungs_only_rows_take_part(tmp_path):
    src = tmp_path / "src"
    _folders(src, n=20)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=64, target="lungs", stratify="age_group"), workers=1)
    table = split_dataset(out, folds=2)
    assert len(table) == 20 and (table.positive == -1).all()
    assert table.groupby("patient").fold.nunique().max() == 1
    assert table.groupby("fold").stratum.apply(lambda s: (s == "adult").sum()).tolist() == [2, 2]
    split = fold_split(out, 0)
    assert len(split.train_ids) + len(split.val_ids) == 20


def test_unknown_pixels_reach_the_target_as_minus_one_through_augmentation(tmp_path):
    from ptxseg.train.data import SegmentationDataset

    src = tmp_path / "src"
    _folders(src, n=3)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=128, target="lungs"), workers=1)
    pp = Preprocessing(stored_size=128, size=64)
    plain = SegmentationDataset(out, ["img00", "img01"], pp, target="lungs")
    _, y = plain[0]
    ign = _labels(out / "ignore" / "img00.png") > 0
    expected = cv2.resize(ign.astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    assert set(torch.unique(y).tolist()) == {-1.0, 0.0, 1.0}
    assert np.array_equal(y[0].numpy() == -1, expected)
    assert (plain[1][1] >= 0).all()
    flipped = SegmentationDataset(out, ["img00"], pp, target="lungs", augment=[{"name": "HorizontalFlip", "p": 1.0}], train=True)
    mirrored = cv2.resize(np.ascontiguousarray(ign[:, ::-1]).astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    assert np.array_equal(flipped[0][1][0].numpy() == -1, mirrored)


@pytest.mark.parametrize("name", sorted(set(list_losses()) - {"sum", "curriculum"}))
def test_every_loss_ignores_unknown_pixels(name):
    loss = build_loss(name)
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.6).float()
    target[:, :, :4] = -1
    logits = torch.randn(2, 1, 16, 16, generator=g, requires_grad=True)
    value = loss(*drop_ignored(logits, target))
    value.backward()
    assert torch.isfinite(value)
    assert (logits.grad[:, :, :4] == 0).all() and logits.grad[:, :, 4:].abs().sum() > 0
    # whatever the network says at unknown pixels, the loss is the same
    other = logits.detach().clone()
    other[:, :, :4] = torch.randn(2, 1, 4, 16, generator=g) * 10
    assert float(loss(*drop_ignored(other, target))) == pytest.approx(float(value.detach()), rel=1e-5, abs=1e-6)


def test_folders_layout_errors(tmp_path):
    src = tmp_path / "src"
    _folders(src, n=2)
    with pytest.raises(PtxsegError, match="no 'nope' column"):
        convert_dataset(src, tmp_path / "a", options=ConvertOptions(size=64, stratify="nope"))
    with pytest.raises(PtxsegError, match="--ignore-value"):
        convert_dataset(src, tmp_path / "b", options=ConvertOptions(size=64, ignore_value=300))
    pd.DataFrame([{"id": "img00", "split": "validation"}]).to_csv(src / "manifest.csv", index=False)
    with pytest.raises(PtxsegError, match="split of 'img00' must be train or test"):
        convert_dataset(src, tmp_path / "c", options=ConvertOptions(size=64))
    pd.DataFrame([{"name": "img00"}]).to_csv(src / "manifest.csv", index=False)
    with pytest.raises(PtxsegError, match="lacks an 'id' column"):
        convert_dataset(src, tmp_path / "d", options=ConvertOptions(size=64))


def test_a_lungs_only_dataset_never_trains_a_pneumothorax_model(tmp_path):
    from ptxseg.config import load_config
    from ptxseg.train.engine import train

    src = tmp_path / "src"
    _folders(src, n=10)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=64, target="lungs"), workers=1)
    cfg = load_config("default", overrides=["data.size=64", "training.epochs=1"])
    with pytest.raises(PtxsegError, match="no pneumothorax annotation"):
        train(cfg, out, tmp_path / "run")


def test_real_lung_annotations_convert_with_sides_and_unknown_regions(tmp_path):
    real = shared_path("lungs_real")
    sample = tmp_path / "src"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    table = pd.read_csv(real / "manifest.csv", dtype=str)
    ignored = []
    for mask_path in sorted((real / "masks").glob("*.png")):
        if (cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) == 127).any():
            ignored.append(mask_path.stem)
    assert len(ignored) >= 1
    ids = sorted(set(ignored[:2]) | set(table[table.age_group == "adult"].id[:3]) | set(table[table.age_group == "child"].id[:3]))
    for i in ids:
        (sample / "images" / f"{i}.jpg").symlink_to(real / "images" / f"{i}.jpg")
        (sample / "masks" / f"{i}.png").symlink_to(real / "masks" / f"{i}.png")
    table[table.id.isin(ids)].to_csv(sample / "manifest.csv", index=False)
    out = tmp_path / "ds"
    convert_dataset(sample, out, options=ConvertOptions(size=256, target="lungs", stratify="age_group"), workers=1)
    m = read_manifest(out).set_index("id")
    assert (m.has_image == 1).all() and set(m.stratum) == {"adult", "child"}
    for i in ids:
        lab = _labels(out / "lungs" / f"{i}.png")
        right, left = np.nonzero(lab == 1)[1], np.nonzero(lab == 2)[1]
        # both fields present, the patient's right on the image left, and a plausible share of the image
        assert len(right) and len(left) and right.mean() < left.mean(), i
        assert 0.1 < (lab > 0).mean() < 0.7, i
    assert all((out / "ignore" / f"{i}.png").is_file() for i in ignored[:2])


def test_a_lung_model_trains_and_is_scored_without_the_unknown_pixels(tmp_path):
    from ptxseg.config import load_config
    from ptxseg.infer.predictor import Predictor
    from ptxseg.measure.metrics import dice_per_image
    from ptxseg.tasks.evaluate import evaluate_model
    from ptxseg.train.engine import train

    src = tmp_path / "src"
    _folders(src, n=10)
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=64, target="lungs", stratify="age_group"), workers=1)
    cfg = load_config(
        "lungs_real_unet_r18_256", overrides=["data.size=64", "training.epochs=1", "training.batch_size=4", "data.folds=2"]
    )
    result = train(cfg, out, tmp_path / "run", fold=0)
    assert result.epochs_run == 1 and result.history[0]["val_images"] == len(fold_split(out, 0, create=False).val_ids)
    # a lungs-only dataset has no pneumothorax labels: its films are not "unlabelled", their lung masks train
    assert result.history[0]["train_loss"] > 0.1
    from ptxseg.artifacts.card import read_card

    assert read_card(tmp_path / "run" / "best.json").training_data.licences == {"CC BY 4.0": 5, "CC BY 3.0": 5}
    predictor = Predictor([tmp_path / "run"])
    ids = fold_split(out, 0, create=False).val_ids
    assert any((out / "ignore" / f"{i}.png").is_file() for i in ids)
    scored = evaluate_model(predictor, out, ids, n_boot=10)
    differs = 0
    for i, dice in zip(ids, scored.dice, strict=True):
        mask = predictor.predict([read_image(out / "images" / f"{i}.png")])[0].mask(predictor.operating_point)
        truth = _labels(out / "lungs" / f"{i}.png") > 0
        ignore_path = out / "ignore" / f"{i}.png"
        known = ~(_labels(ignore_path) > 0) if ignore_path.is_file() else np.ones_like(truth)
        assert dice == pytest.approx(float(dice_per_image(mask & known, truth & known)[0]))
        differs += dice != pytest.approx(float(dice_per_image(mask, truth)[0]))
    assert differs  # the model did predict inside an unknown region, and that was not counted against it

    # a card written before cards carried licences takes them from its dataset when exported
    from ptxseg.artifacts.card import read_card, write_card
    from ptxseg.deploy.export import export_bundle

    card = read_card(tmp_path / "run" / "best.json")
    write_card(
        tmp_path / "run" / "best.json",
        card.model_copy(update={"training_data": card.training_data.model_copy(update={"licences": None})}),
    )
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle").out
    assert read_card(bundle / "member-0.json").training_data.licences == {"CC BY 4.0": 5, "CC BY 3.0": 5}
    text = (bundle / "MODEL_CARD.md").read_text()
    assert "CC BY 3.0 (5 images)" in text and "Phase I of ptxseg" in text


def test_stratum_weights_draw_an_under_represented_group_more_often(tmp_path):
    from ptxseg.config import load_config
    from ptxseg.train.data import build_sampler
    from ptxseg.train.engine import train

    src = tmp_path / "src"
    _folders(src, n=20)  # 4 adult films of 20
    out = tmp_path / "ds"
    convert_dataset(src, out, options=ConvertOptions(size=64, target="lungs", stratify="age_group"), workers=1)
    split_dataset(out, folds=2)
    split = fold_split(out, 0)
    assert split.train_strata is not None and len(split.train_strata) == len(split.train_ids)
    adult = np.array([s == "adult" for s in split.train_strata])
    cfg = load_config("lungs_real_unet_r18_256_adult", overrides=["model.pretrained=null"])
    assert cfg.sampler.stratum_weights == {"adult": 5}
    sampler = build_sampler(cfg, split.train_labels, 0.5, 0, 1, 0, split.train_strata)
    draws = np.concatenate([(sampler.set_epoch(e), np.fromiter(sampler, int))[1] for e in range(200)])
    expected = 5 * adult.sum() / (5 * adult.sum() + (~adult).sum())  # share of adult draws with weight 5
    assert adult[draws].mean() == pytest.approx(expected, abs=0.02) and adult.mean() < expected / 2
    assert len(sampler) == len(split.train_ids)  # an epoch is as long as before, only who is drawn changes

    # a stratum the data do not have, or a dataset without strata, is a config error naming the fix
    for overrides, dataset, match in (
        (["sampler.stratum_weights={elderly: 3}"], out, "no training image is in stratum 'elderly'"),
        ([], None, "no 'stratum' column"),
    ):
        ds = dataset
        if ds is None:
            ds = tmp_path / "plain"
            convert_dataset(src, ds, options=ConvertOptions(size=64, target="lungs"), workers=1)
        bad = load_config(
            "lungs_real_unet_r18_256_adult", overrides=["model.pretrained=null", "data.size=64", "training.epochs=1", *overrides]
        )
        with pytest.raises(PtxsegError, match=match):
            train(bad, ds, tmp_path / f"run_{len(overrides)}")
    with pytest.raises(PtxsegError, match="needs kind: weighted"):
        load_config("lungs_real_unet_r18_256_adult", overrides=["model.pretrained=null", "sampler.kind=shuffle"])
    with pytest.raises(PtxsegError, match="positive"):
        load_config("lungs_real_unet_r18_256_adult", overrides=["model.pretrained=null", "sampler.stratum_weights={adult: 0}"])
