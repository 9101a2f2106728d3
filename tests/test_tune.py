"""Operating-point search: known answers on constructed maps, agreement with apply_operating_point, the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ptxseg.cli import main
from ptxseg.config import load_config
from ptxseg.errors import PtxsegError
from ptxseg.gridsearch import collect, search
from ptxseg.metrics import dice_per_image
from ptxseg.postprocess import OperatingPoint, apply_operating_point
from ptxseg.synth.dataset import synth_dataset
from ptxseg.train.engine import train


def _maps(noise_prob: float, noise_px: int, n_pos: int = 6, n_neg: int = 10, seed: int = 0):
    """256² maps: positives have a 40×40 lesion at p=0.9; negatives a square spot of ``noise_px`` px at ``noise_prob``."""
    rng = np.random.default_rng(seed)
    probs, truths = [], []
    for k in range(n_pos + n_neg):
        p = rng.random((256, 256)).astype(np.float32) * 0.15
        t = np.zeros((256, 256), np.uint8)
        r, c = rng.integers(20, 200, 2)
        if k < n_pos:
            t[r : r + 40, c : c + 40] = 1
            p[r : r + 40, c : c + 40] = 0.9
        else:
            side = int(np.sqrt(noise_px))
            p[r : r + side, c : c + side] = noise_prob
        probs.append(p)
        truths.append(t)
    return np.stack(probs), np.stack(truths)


def test_threshold_removes_weak_false_spots():
    probs, truths = _maps(noise_prob=0.5, noise_px=900)
    result = search(collect(zip(probs, truths, strict=True)))
    assert result.best_dice == 1.0 and 0.5 <= result.best.threshold < 0.9
    sweep = {r["threshold"]: r for r in result.threshold_sweep}
    assert sweep[0.4]["case_specificity"] == 0.0 and sweep[0.6]["case_specificity"] == 1.0


def test_minimum_mask_size_removes_small_confident_spots():
    probs, truths = _maps(noise_prob=0.95, noise_px=25)  # 25 px at 256² = 400 px at 1024²
    result = search(collect(zip(probs, truths, strict=True)))
    assert result.best_dice == 1.0 and (result.best.min_mask_px >= 500 or result.best.min_component_px >= 50)
    no_size = max(r["dice"] for r in result.threshold_sweep)
    assert no_size < 1.0  # no threshold alone separates them


@pytest.mark.parametrize("seed", [1, 2])
def test_search_agrees_with_apply_operating_point(seed):
    rng = np.random.default_rng(seed)
    probs = np.clip(rng.normal(0.3, 0.25, (12, 128, 128)), 0, 1).astype(np.float32)
    probs = np.stack([cv2.GaussianBlur(p, (0, 0), 3) for p in probs])
    truths = (probs > 0.45).astype(np.uint8)
    truths[::3] = 0
    result = search(collect(zip(probs, truths, strict=True)))
    assert dice_per_image(apply_operating_point(probs, result.best), truths).mean() == pytest.approx(result.best_dice)
    for r in result.triplets[:3]:
        op = OperatingPoint(r["bottom_threshold"], r["component_px"], 0, 1024, r["top_threshold"], r["top_min_px"])
        assert dice_per_image(apply_operating_point(probs, op), truths).mean() == pytest.approx(r["dice"])
    i, k = 3, 2
    op = OperatingPoint(result.threshold_sweep[i]["threshold"], int(result.size_grid_components[i, k]), result.min_mask_px[k], 1024)
    assert dice_per_image(apply_operating_point(probs, op), truths).mean() == pytest.approx(result.size_grid[i, k])


def test_classifier_gate_empties_what_no_size_rule_can():
    probs, truths = _maps(noise_prob=0.95, noise_px=1600)  # negatives: a confident 40×40 false lesion, like the true ones
    heads = np.where(truths.reshape(len(truths), -1).any(1), 0.8, 0.25)
    plain = search(collect(zip(probs, truths, strict=True)))
    assert plain.best_dice < 1.0 and plain.gates == []  # no head, no gate table
    result = search(collect(zip(probs, truths, heads, strict=True)))
    assert result.best_dice == 1.0 and result.family.startswith("classifier gate")
    assert 0.25 < result.best.cls_threshold <= 0.8
    gates = {r["cls_threshold"]: r for r in result.gates}
    assert len(gates) == 9 and gates[0.2]["dice"] == pytest.approx(plain.best_dice) and gates[0.9]["case_sensitivity"] == 0.0
    for r in result.gates:
        op = OperatingPoint(r["threshold"], r["component_px"], r["min_mask_px"], 1024, cls_threshold=r["cls_threshold"])
        assert dice_per_image(apply_operating_point(probs, op, heads), truths).mean() == pytest.approx(r["dice"])
    with pytest.raises(PtxsegError, match="cls_threshold is set but there is no classifier"):
        apply_operating_point(probs[0], result.best)
    with pytest.raises(ValueError, match="some maps only"):
        collect([(probs[0], truths[0], 0.5), (probs[1], truths[1])])


def _tiny_run(tmp_path, seed: int, extra: tuple[str, ...] = ()):
    """16 phantoms at 64² and a one-epoch U-Net-R18 run on them: (dataset, run directory)."""
    data = tmp_path / "ds"
    synth_dataset(data, 16, size=64, seed=seed, positive_fraction=0.5)
    sets = ["data.size=64", "model.encoder=resnet18", "training.epochs=1", "training.batch_size=4", "data.workers=0", *extra]
    train(load_config("default", sets), data, tmp_path / "run", quiet=True)
    return data, tmp_path / "run"


def _evaluate_json(run, data, fold, out) -> int:
    return main(
        ["evaluate", "--model", str(run), "--data", str(data), "--fold", str(fold), "--json", str(out), "-q", "--bootstrap", "20"]
    )


def test_tune_cli_writes_the_operating_point(tmp_path):
    data, _ = _tiny_run(tmp_path, seed=5)
    before = json.loads((tmp_path / "run" / "best.json").read_text())
    assert main(["tune", str(tmp_path / "run"), "-q", "--save-probs", str(tmp_path / "probs")]) == 0
    after = json.loads((tmp_path / "run" / "best.json").read_text())
    assert after["tuning"]["fold"] == before["training_data"]["fold"] and after["tuning"]["tta"] == ["identity", "hflip"]
    assert set(after["operating_point"]) >= {"threshold", "min_component_px", "min_mask_px", "top_threshold"}
    assert (tmp_path / "run" / "threshold_curves.png").is_file()
    assert len(list((tmp_path / "probs").glob("*.npz"))) == after["tuning"]["images"]
    # the tuned point is what `ptxseg evaluate --model` applies
    out = tmp_path / "eval.json"
    assert _evaluate_json(tmp_path / "run", data, after["tuning"]["fold"], out) == 0
    doc = json.loads(out.read_text())
    assert doc["operating_point"] == after["operating_point"] and doc["images"] == after["tuning"]["images"]
    assert doc["mean_dice"] == pytest.approx(after["metrics"]["val_dice_tuned"])
    assert (
        main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(data), "--split", "test", "-q"]) == 2
    )  # phantoms: no test split
    # a submission of the same fold, scored against the stored masks, gives the same SIIM score
    sub = tmp_path / "sub.csv"
    assert (
        main(
            [
                "submit",
                "--model",
                str(tmp_path / "run"),
                "--data",
                str(data),
                "--fold",
                str(after["tuning"]["fold"]),
                "--out",
                str(sub),
                "--format",
                "absolute",
                "-q",
            ]
        )
        == 0
    )
    rows = sub.read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and len(rows) == 1 + after["tuning"]["images"]
    ev = tmp_path / "sub_eval.json"
    fold_ids = [r.split(",")[0] for r in rows[1:]]
    truth = tmp_path / "truth"
    truth.mkdir()
    for image_id in fold_ids:  # canonical phantoms: the SOPInstanceUID is the file id
        (truth / f"{image_id}.png").write_bytes((data / "masks" / f"{image_id}.png").read_bytes())
    assert (
        main(["evaluate", "--pred", str(sub), "--truth", str(truth), "--size", "64", "--json", str(ev), "-q", "--bootstrap", "0"]) == 0
    )
    assert json.loads(ev.read_text())["mean_dice"] == pytest.approx(doc["mean_dice"])


def test_restore_mask_inverts_the_stored_geometry():
    from ptxseg.data.geometry import Geometry, resize_mask, restore_mask

    m = np.zeros((300, 200), np.uint8)
    m[50:200, 40:120] = 1
    geom = Geometry.fit(300, 200, 128, "pad")
    back = restore_mask(resize_mask(m, geom, 128), geom)
    assert back.shape == m.shape and dice_per_image(back, m)[0] > 0.97


def test_report_from_run_and_from_evaluation_json(tmp_path):
    from ptxseg.render import case_tile as overlay
    from ptxseg.report import pick_cases

    img = np.full((64, 64), 0.5, np.float32)
    pred, truth = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    pred[10:30, 10:30], truth[20:40, 20:40] = True, True
    tile = overlay(img, pred, truth)
    assert tuple(tile[12, 12]) != tuple(tile[35, 35]) and tile[12, 12, 2] < tile[12, 12, 0]  # yellow vs red fill
    assert tile[50, 50].tolist() == [127, 127, 127]  # untouched background
    cases = pick_cases(list("abcdef"), np.array([0.1, 0.9, 0.5, 0.3, 0.7, 1.0]), np.array([1, 1, 1, 1, 1, 0], bool), k=2)
    assert cases["worst"] == ["a", "d"] and cases["best"] == ["b", "e"] and "f" not in sum(cases.values(), [])
    data, _ = _tiny_run(tmp_path, seed=8)
    assert main(["report", str(tmp_path / "run"), "-q"]) == 0
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "SIIM score" in page and "confusion.png" in page and "case_worst_0.png" in page and "curves.png" in page
    ev = tmp_path / "ev.json"
    assert _evaluate_json(tmp_path / "run", data, 0, ev) == 0
    assert main(["report", str(ev), "--out", str(tmp_path / "rep2"), "-q"]) == 0
    assert (tmp_path / "rep2" / "report.html").is_file() and list((tmp_path / "rep2").glob("case_best_*.png"))


def test_model_with_classifier_head_tunes_and_evaluates_with_its_gate(tmp_path):
    data, run = _tiny_run(tmp_path, seed=6, extra=("model.aux_classifier=true",))
    assert main(["tune", str(run), "-q", "--tta", "identity"]) == 0
    meta = json.loads((run / "best.json").read_text())
    gates = meta["tuning"]["classifier_gates"]
    assert [g["cls_threshold"] for g in gates] == pytest.approx([0.1 * k for k in range(1, 10)])
    assert max(g["dice"] for g in gates) <= meta["metrics"]["val_dice_tuned"] + 1e-12
    # store the c = 0.5 row as the operating point: evaluate applies the gate with the head's probability
    g = gates[4]
    at = meta["operating_point"]["at_size"]
    meta["operating_point"] = OperatingPoint(g["threshold"], g["component_px"], g["min_mask_px"], at, cls_threshold=0.5).to_dict()
    (run / "best.json").write_text(json.dumps(meta))
    out = tmp_path / "eval.json"
    assert _evaluate_json(run, data, meta["tuning"]["fold"], out) == 0
    doc = json.loads(out.read_text())
    assert doc["operating_point"]["cls_threshold"] == pytest.approx(0.5)
    assert doc["mean_dice"] == pytest.approx(gates[4]["dice"])


def test_ensemble_tuned_from_stored_maps_and_used_everywhere(tmp_path):
    data, run_a = _tiny_run(tmp_path, seed=7)
    sets = ["data.size=64", "model.encoder=resnet18", "training.epochs=1", "training.batch_size=4", "data.workers=0"]
    sets.append("training.seed=1")
    run_b = train(load_config("default", sets), data, tmp_path / "run_b", quiet=True).run_dir
    fold = json.loads((run_a / "best.json").read_text())["training_data"]["fold"]
    models = ["--model", str(run_a), "--model", str(run_b)]
    probs, ev_json = tmp_path / "maps", tmp_path / "ens_eval.json"
    common = ["--data", str(data), "--fold", str(fold), "-q", "--bootstrap", "0"]
    assert (
        main(["evaluate", *models, "--weights", "1", "--weights", "3", *common, "--save-probs", str(probs), "--json", str(ev_json)])
        == 0
    )
    doc = json.loads(ev_json.read_text())
    assert doc["model_weights"] == [0.25, 0.75] and len(list(probs.glob("*.npz"))) == doc["images"]

    # several models need somewhere to keep their operating point
    assert main(["tune", str(run_a), str(run_b), "-q"]) == 2
    ens = tmp_path / "ens" / "ensemble.json"
    w = ["--weights", "1", "--weights", "3"]
    assert main(["tune", str(run_a), str(run_b), *w, "--probs", str(probs), "--out", str(ens), "-q", "--workers", "2"]) == 0
    from_maps = json.loads(ens.read_text())
    assert from_maps["format"] == "ptxseg-ensemble/1" and from_maps["weights"] == [0.25, 0.75]
    assert from_maps["tuning"]["source"] == str(probs) and from_maps["tuning"]["images"] == doc["images"]
    assert (tmp_path / "ens" / "ensemble_threshold_curves.png").is_file()

    # tuned by predicting: `evaluate --model ensemble.json` applies its weights, TTA and point and gets its Dice back
    assert main(["tune", str(run_a), str(run_b), *w, "--out", str(ens), "-q"]) == 0
    tuned = json.loads(ens.read_text())
    assert tuned["members"] == [str(run_a), str(run_b)]  # outside the ensemble's folder: kept absolute
    assert tuned["tuning"]["val_dice_tuned"] == pytest.approx(from_maps["tuning"]["val_dice_tuned"], abs=0.05)  # uint8 maps
    ev2 = tmp_path / "ens_eval2.json"
    assert main(["evaluate", "--model", str(ens), *common, "--json", str(ev2)]) == 0
    doc2 = json.loads(ev2.read_text())
    assert doc2["operating_point"] == tuned["operating_point"] and doc2["mean_dice"] == pytest.approx(
        tuned["tuning"]["val_dice_tuned"]
    )
    assert main(["report", str(ens), "-q"]) == 2  # an ensemble needs an explicit fold or split
    assert main(["report", str(ens), "--fold", str(fold), "--out", str(tmp_path / "rep"), "-q"]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "ensemble.json" in page and (tmp_path / "rep" / "threshold_curves.png").is_file()
    (tmp_path / "bad.json").write_text('{"format": "ptxseg-ensemble/1", "members": []}')
    assert main(["evaluate", "--model", str(tmp_path / "bad.json"), *common]) == 2


def test_parallel_statistics_equal_serial():
    probs, truths = _maps(noise_prob=0.7, noise_px=400, n_pos=5, n_neg=6, seed=3)
    heads = np.linspace(0.1, 0.9, len(probs))
    serial = collect(zip(probs, truths, heads, strict=True))
    parallel = collect(zip(probs, truths, heads, strict=True), workers=2)
    for name in ("kept_area", "kept_inter", "top_count", "true_area", "cls_prob"):
        np.testing.assert_array_equal(getattr(serial, name), getattr(parallel, name))
    assert serial.scale == parallel.scale == 256 * 256 / 1024**2
    with pytest.raises(ValueError, match="different sizes"):
        collect([(probs[0], truths[0]), (probs[1][:128], truths[1][:128])])


def test_a_typed_tune_request_dry_run_changes_nothing_and_agrees_with_the_command(tmp_path):
    from ptxseg.tune import TuneRequest, tune_model

    _, run = _tiny_run(tmp_path, seed=6)
    before = (run / "best.json").read_text()
    dry = tune_model(TuneRequest([run], write=False))
    assert dry.written is None and (run / "best.json").read_text() == before
    assert main(["tune", str(run), "-q"]) == 0
    after = json.loads((run / "best.json").read_text())
    assert after["operating_point"] == dry.result.best.to_dict()
    assert after["metrics"]["val_dice_tuned"] == pytest.approx(dry.result.best_dice)
