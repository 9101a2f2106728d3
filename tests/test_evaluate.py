"""`ptxseg evaluate` on the real SIIM annotations: formats, missing and extra images, PNG folders, JSON."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest

from ptxseg.cli import main
from ptxseg.io.images import write_png
from ptxseg.io.rle import read_rle_csv, rle_encode
from ptxseg.tasks.evaluate import evaluate_masks, open_masks

from .conftest import shared_path


@pytest.fixture(scope="module")
def truth_csv(tmp_path_factory):
    """The first 60 images of the real train-rle.csv (all their rows), as the challenge wrote them."""
    src = shared_path("siim", "train-rle.csv.gz")
    with gzip.open(src, "rt") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    ids = list(dict.fromkeys(r[0] for r in body))[:60]
    keep = [r for r in body if r[0] in set(ids)]
    out = tmp_path_factory.mktemp("truth") / "truth.csv"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows([header, *keep])
    return out


def test_truth_against_itself_in_the_other_rle_format(truth_csv, tmp_path):
    truth = read_rle_csv(truth_csv)
    assert 5 < len(truth.positive_ids) < 60
    pred = tmp_path / "pred_absolute.csv"
    with open(pred, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "EncodedPixels"])
        for image_id in truth:
            m = truth[image_id]
            w.writerow([image_id, rle_encode(m, "absolute") if m.any() else "-1"])
    ev = evaluate_masks(open_masks(pred), open_masks(truth_csv), n_boot=50)
    assert ev.metrics["mean_dice"] == 1.0 and ev.metrics["case_sensitivity"] == 1.0 and ev.metrics["case_specificity"] == 1.0
    assert ev.metrics["positives"] == len(truth.positive_ids)


def test_missing_extra_png_folder_and_json(truth_csv, tmp_path):
    truth = read_rle_csv(truth_csv)
    pos = truth.positive_ids
    folder = tmp_path / "pred"
    for image_id in truth:
        if image_id == pos[0]:
            continue  # missing: scored as an empty prediction, Dice 0 on a positive
        m = truth[image_id]
        write_png(folder / f"{image_id}.png", (m[::2, ::2] * 255).astype(np.uint8))  # 512² PNGs, resized to 1024²
    write_png(folder / "not.in.truth.png", np.zeros((512, 512), np.uint8))
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--pred", str(folder), "--truth", str(truth_csv), "--json", str(out), "-q", "--bootstrap", "100"]) == 0
    doc = json.loads(out.read_text())
    assert doc["missing_in_pred"] == 1 and doc["extra_in_pred"] == 1
    assert doc["per_image_dice"][pos[0]] == 0.0 and "not.in.truth" not in doc["per_image_dice"]
    others = [v for k, v in doc["per_image_dice"].items() if k != pos[0]]
    assert min(others) > 0.9  # half-resolution masks scaled back up
    assert doc["mean_dice"] == pytest.approx(np.mean(list(doc["per_image_dice"].values())))
    assert doc["case_fn"] == 1 and doc["ci95"]["mean_dice"][0] <= doc["mean_dice"] <= doc["ci95"]["mean_dice"][1]


def test_bad_sources(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("ImageId,EncodedPixels\nx,1 5 9\n")
    assert main(["evaluate", "--pred", str(tmp_path / "bad.csv"), "--truth", str(tmp_path / "bad.csv"), "-q"]) == 2
    assert "bad.csv" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "empty"), "--truth", str(tmp_path / "bad.csv"), "-q"]) == 2
    assert "no .png masks" in capsys.readouterr().err
