"""Operating-point search: known answers on constructed maps, agreement with apply_operating_point, the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ptxseg.cli import main
from ptxseg.config import load_config
from ptxseg.errors import PtxsegError
from ptxseg.measure.gridsearch import collect, search
from ptxseg.measure.metrics import ImageStats, dice_per_image, summarize
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point
from ptxseg.synth.dataset import synth_dataset
from ptxseg.train.engine import train

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


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
    # smooth random maps (peaks 0.6–1.0) and truths from a perturbed copy: Dice, sensitivity and specificity all
    # vary over the grid, so agreement is tested on non-trivial values
    rng = np.random.default_rng(seed)
    noise, other = rng.normal(0, 1, (2, 12, 128, 128)).astype(np.float32)

    def unit(a):
        return (a - a.min()) / (a.max() - a.min())

    probs = np.stack([unit(cv2.GaussianBlur(n, (0, 0), 4)) * s for n, s in zip(noise, rng.uniform(0.6, 1, 12), strict=True)])
    truths = np.stack([unit(cv2.GaussianBlur(n + 0.5 * o, (0, 0), 4)) > 0.7 for n, o in zip(noise, other, strict=True)])
    truths = truths.astype(np.uint8)
    truths[::3] = 0
    result = search(collect(zip(probs.astype(np.float32), truths, strict=True)))
    assert 0.2 < result.best_dice < 0.9  # a non-trivial grid: neither everything right nor everything wrong
    assert dice_per_image(apply_operating_point(probs, result.best), truths).mean() == pytest.approx(result.best_dice)
    for r in result.triplets[:3]:
        op = OperatingPoint(
            threshold=r["bottom_threshold"],
            min_component_px=r["component_px"],
            top_threshold=r["top_threshold"],
            top_min_px=r["top_min_px"],
        )
        assert dice_per_image(apply_operating_point(probs, op), truths).mean() == pytest.approx(r["dice"])
    for row in result.threshold_sweep[::4]:  # the sweep's case statistics are what `ptxseg evaluate` reports
        expected = summarize(ImageStats.of(probs > row["threshold"], truths))
        assert row["dice"] == pytest.approx(expected["mean_dice"])
        for key in ("case_sensitivity", "case_specificity"):
            assert row[key] == pytest.approx(expected[key])
    i, k = 3, 2
    op = OperatingPoint(
        threshold=result.threshold_sweep[i]["threshold"],
        min_component_px=int(result.size_grid_components[i, k]),
        min_mask_px=result.min_mask_px[k],
    )
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
    assert len(gates) == 21 and gates[0.2]["dice"] == pytest.approx(plain.best_dice) and gates[0.9]["case_sensitivity"] == 0.0
    for r in result.gates:
        op = OperatingPoint(
            threshold=r["threshold"],
            min_component_px=r["component_px"],
            min_mask_px=r["min_mask_px"],
            cls_threshold=r["cls_threshold"],
        )
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
    train(load_config("default", sets), data, tmp_path / "run")
    return data, tmp_path / "run"


def _evaluate_json(run, data, fold, out) -> int:
    return main(
        ["evaluate", "--model", str(run), "--data", str(data), "--fold", str(fold), "--json", str(out), "-q", "--bootstrap", "20"]
    )


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny run, its card before tuning, and ``ptxseg tune --save-probs`` applied to it: (dataset, run, before, after)."""
    root = tmp_path_factory.mktemp("tuned")
    data, run = _tiny_run(root, seed=5)
    before = json.loads((run / "best.json").read_text())
    assert main(["tune", str(run), "-q", "--save-probs", str(root / "probs")]) == 0
    return data, run, before, json.loads((run / "best.json").read_text())


def test_tune_writes_the_operating_point_into_the_card(tuned):
    _, run, before, after = tuned
    assert after["tuning"]["fold"] == before["training_data"]["fold"] and after["tuning"]["tta"] == ["identity", "hflip"]
    assert set(after["operating_point"]) >= {"threshold", "min_component_px", "min_mask_px", "top_threshold"}
    assert (run / "threshold_curves.png").is_file()
    assert len(list((run.parent / "probs").glob("*.npz"))) == after["tuning"]["images"]


def test_evaluate_applies_the_tuned_point_and_gets_its_dice_back(tuned, tmp_path):
    data, run, _, after = tuned
    out = tmp_path / "eval.json"
    assert _evaluate_json(run, data, after["tuning"]["fold"], out) == 0
    doc = json.loads(out.read_text())
    assert doc["operating_point"] == after["operating_point"] and doc["images"] == after["tuning"]["images"]
    assert doc["mean_dice"] == pytest.approx(after["metrics"]["val_dice_tuned"])


def test_evaluate_refuses_a_split_the_dataset_lacks(tuned, capsys):
    data, run, _, _ = tuned
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--split", "test", "-q"]) == 2  # phantoms: no test split
    assert "test" in capsys.readouterr().err


def test_a_submission_scores_what_evaluate_reports(tuned, tmp_path):
    data, run, _, after = tuned
    fold = str(after["tuning"]["fold"])
    ev = tmp_path / "eval.json"
    assert _evaluate_json(run, data, fold, ev) == 0
    sub = tmp_path / "sub.csv"
    assert (
        main(["submit", "--model", str(run), "--data", str(data), "--fold", fold, "--out", str(sub), "--format", "absolute", "-q"])
        == 0
    )
    rows = sub.read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and len(rows) == 1 + after["tuning"]["images"]
    truth = tmp_path / "truth"
    truth.mkdir()
    for image_id in (r.split(",")[0] for r in rows[1:]):  # canonical phantoms: the SOPInstanceUID is the file id
        (truth / f"{image_id}.png").write_bytes((data / "masks" / f"{image_id}.png").read_bytes())
    scored = tmp_path / "sub_eval.json"
    assert (
        main(["evaluate", "--pred", str(sub), "--truth", str(truth), "--size", "64", "--json", str(scored), "-q", "--bootstrap", "0"])
        == 0
    )
    assert json.loads(scored.read_text())["mean_dice"] == pytest.approx(json.loads(ev.read_text())["mean_dice"])


def test_restore_mask_inverts_the_stored_geometry():
    from ptxseg.data.geometry import Geometry, resize_mask, restore_mask

    m = np.zeros((300, 200), np.uint8)
    m[50:200, 40:120] = 1
    geom = Geometry.fit(300, 200, 128, "pad")
    back = restore_mask(resize_mask(m, geom, 128), geom)
    assert back.shape == m.shape and dice_per_image(back, m)[0] > 0.97


def test_case_tile_colours_and_case_picking():
    from ptxseg.clinical.render import case_tile as overlay
    from ptxseg.tasks.report import pick_cases

    img = np.full((64, 64), 0.5, np.float32)
    pred, truth = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    pred[10:30, 10:30], truth[20:40, 20:40] = True, True
    tile = overlay(img, pred, truth)
    assert tuple(tile[12, 12]) != tuple(tile[35, 35]) and tile[12, 12, 2] < tile[12, 12, 0]  # yellow vs red fill
    assert tile[50, 50].tolist() == [127, 127, 127]  # untouched background
    cases = pick_cases(list("abcdef"), np.array([0.1, 0.9, 0.5, 0.3, 0.7, 1.0]), np.array([1, 1, 1, 1, 1, 0], bool), k=2)
    assert cases["worst"] == ["a", "d"] and cases["best"] == ["b", "e"] and "f" not in sum(cases.values(), [])


def test_report_from_a_run(tuned):
    _, run, _, _ = tuned
    assert main(["report", str(run), "-q"]) == 0
    page = (run / "report" / "report.html").read_text()
    assert "SIIM score" in page and "confusion.png" in page and "case_worst_0.png" in page and "curves.png" in page


def test_report_from_an_evaluation_json(tuned, tmp_path):
    data, run, _, _ = tuned
    ev = tmp_path / "ev.json"
    assert _evaluate_json(run, data, 0, ev) == 0
    assert main(["report", str(ev), "--out", str(tmp_path / "rep2"), "-q"]) == 0
    assert (tmp_path / "rep2" / "report.html").is_file() and list((tmp_path / "rep2").glob("case_best_*.png"))


def test_model_with_classifier_head_tunes_and_evaluates_with_its_gate(tmp_path):
    data, run = _tiny_run(tmp_path, seed=6, extra=("model.aux_classifier=true",))
    assert main(["tune", str(run), "-q", "--tta", "identity"]) == 0
    meta = json.loads((run / "best.json").read_text())
    gates = meta["tuning"]["classifier_gates"]
    assert [g["cls_threshold"] for g in gates] == pytest.approx([0.05 * k for k in range(1, 20)] + [0.98, 0.99])
    assert max(g["dice"] for g in gates) <= meta["metrics"]["val_dice_tuned"] + 1e-12
    # store the c = 0.5 row as the operating point: evaluate applies the gate with the head's probability
    g = gates[4]
    at = meta["operating_point"]["at_size"]
    meta["operating_point"] = OperatingPoint(
        threshold=g["threshold"], min_component_px=g["component_px"], min_mask_px=g["min_mask_px"], at_size=at, cls_threshold=0.5
    ).to_dict()
    (run / "best.json").write_text(json.dumps(meta))
    out = tmp_path / "eval.json"
    assert _evaluate_json(run, data, meta["tuning"]["fold"], out) == 0
    doc = json.loads(out.read_text())
    assert doc["operating_point"]["cls_threshold"] == pytest.approx(0.5)
    assert doc["mean_dice"] == pytest.approx(gates[4]["dice"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two tiny runs on one dataset, their validation fold, and `evaluate` of the pair (weights 1:3) keeping its maps."""
    root = tmp_path_factory.mktemp("pair")
    data, run_a = _tiny_run(root, seed=7)
    sets = ["data.size=64", "model.encoder=resnet18", "training.epochs=1", "training.batch_size=4", "data.workers=0"]
    run_b = train(load_config("default", [*sets, "training.seed=1"]), data, root / "run_b").run_dir
    fold = json.loads((run_a / "best.json").read_text())["training_data"]["fold"]
    probs, ev_json = root / "maps", root / "ens_eval.json"
    models = ["--model", str(run_a), "--model", str(run_b), "--weights", "1", "--weights", "3"]
    assert main(["evaluate", *models, *_common(data, fold), "--save-probs", str(probs), "--json", str(ev_json)]) == 0
    return {"data": data, "a": run_a, "b": run_b, "fold": fold, "probs": probs, "eval": json.loads(ev_json.read_text())}


def _common(data, fold) -> list[str]:
    return ["--data", str(data), "--fold", str(fold), "-q", "--bootstrap", "0"]


WEIGHTS = ["--weights", "1", "--weights", "3"]


def test_ensemble_evaluate_normalises_weights_and_keeps_every_map(pair):
    assert pair["eval"]["model_weights"] == [0.25, 0.75]
    assert len(list(pair["probs"].glob("*.npz"))) == pair["eval"]["images"]


def test_several_models_need_somewhere_to_keep_their_point(pair, capsys):
    assert main(["tune", str(pair["a"]), str(pair["b"]), "-q"]) == 2
    assert "--out" in capsys.readouterr().err


def _tune_from_maps(pair, ens) -> dict:
    cmd = ["tune", str(pair["a"]), str(pair["b"]), *WEIGHTS, "--probs", str(pair["probs"]), "--out", str(ens), "-q", "--workers", "2"]
    assert main(cmd) == 0
    return json.loads(ens.read_text())


def test_ensemble_tuned_from_stored_maps(pair, tmp_path):
    ens = tmp_path / "ens" / "ensemble.json"
    from_maps = _tune_from_maps(pair, ens)
    assert from_maps["format"] == "ptxseg-ensemble/1" and from_maps["weights"] == [0.25, 0.75]
    assert from_maps["tuning"]["source"] == str(pair["probs"]) and from_maps["tuning"]["images"] == pair["eval"]["images"]
    assert (tmp_path / "ens" / "ensemble_threshold_curves.png").is_file()


def test_ensemble_tuned_by_predicting_is_what_evaluate_applies(pair, tmp_path):
    ens = tmp_path / "ens" / "ensemble.json"
    from_maps = _tune_from_maps(pair, tmp_path / "maps_ens.json")
    assert main(["tune", str(pair["a"]), str(pair["b"]), *WEIGHTS, "--out", str(ens), "-q"]) == 0
    tuned = json.loads(ens.read_text())
    assert tuned["members"] == [str(pair["a"]), str(pair["b"])]  # outside the ensemble's folder: kept absolute
    assert tuned["tuning"]["val_dice_tuned"] == pytest.approx(from_maps["tuning"]["val_dice_tuned"], abs=0.05)  # uint8 maps
    ev = tmp_path / "ens_eval.json"
    assert main(["evaluate", "--model", str(ens), *_common(pair["data"], pair["fold"]), "--json", str(ev)]) == 0
    doc = json.loads(ev.read_text())
    assert doc["operating_point"] == tuned["operating_point"]
    assert doc["mean_dice"] == pytest.approx(tuned["tuning"]["val_dice_tuned"])


def test_report_of_an_ensemble_needs_a_fold(pair, tmp_path):
    ens = tmp_path / "ensemble.json"
    _tune_from_maps(pair, ens)
    assert main(["report", str(ens), "-q"]) == 2  # an ensemble records no fold of its own
    assert main(["report", str(ens), "--fold", str(pair["fold"]), "--out", str(tmp_path / "rep"), "-q"]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "ensemble.json" in page and (tmp_path / "rep" / "threshold_curves.png").is_file()


def test_an_ensemble_file_without_members_is_refused(pair, tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"format": "ptxseg-ensemble/1", "members": []}')
    assert main(["evaluate", "--model", str(tmp_path / "bad.json"), *_common(pair["data"], pair["fold"])]) == 2
    assert "bad.json" in capsys.readouterr().err


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
    from ptxseg.tasks.tune import TuneRequest, tune_model

    _, run = _tiny_run(tmp_path, seed=6)
    before = (run / "best.json").read_text()
    dry = tune_model(TuneRequest([run], write=False))
    assert dry.written is None and (run / "best.json").read_text() == before
    assert main(["tune", str(run), "-q"]) == 0
    after = json.loads((run / "best.json").read_text())
    assert after["operating_point"] == dry.result.best.to_dict()
    assert after["metrics"]["val_dice_tuned"] == pytest.approx(dry.result.best_dice)


def _mostly_positive_maps():
    """30 positives (15 with a 40×40 lesion, 15 with a 16×16 one) and 2 negatives with a 16×16 false spot, all at
    p=0.9: only a minimum mask size tells the negatives apart, at the price of the small positives."""
    probs, truths = [], []
    for k in range(32):
        p, t = np.full((256, 256), 0.05, np.float32), np.zeros((256, 256), np.uint8)
        side = 40 if k < 15 else 16
        p[100 : 100 + side, 100 : 100 + side] = 0.9
        if k < 30:
            t[100 : 100 + side, 100 : 100 + side] = 1
        probs.append(p)
        truths.append(t)
    return np.stack(probs), np.stack(truths)


def test_prevalence_weighting_tunes_for_the_population_not_the_validation_mix():
    probs, truths = _mostly_positive_maps()
    stats = collect(zip(probs, truths, strict=True))
    plain = search(stats)
    assert plain.best.min_mask_px == 0 and plain.best_dice == pytest.approx(30 / 32)  # 94 % positive: keep everything
    weighted = search(stats, prevalence=0.22)
    # at 22 % positives the two false positives cost more than the small lesions: a size rule (> 256 px at 256²)
    assert weighted.best.min_mask_px * (256 / 1024) ** 2 > 256
    assert weighted.best_dice == pytest.approx(0.22 * 0.5 + 0.78 * 1.0)
    per_image = dice_per_image(apply_operating_point(probs, weighted.best), truths)
    positive = truths.reshape(32, -1).any(1)
    assert weighted.best_dice == pytest.approx(0.22 * per_image[positive].mean() + 0.78 * per_image[~positive].mean())
    sweep = {r["threshold"]: r for r in weighted.threshold_sweep}  # the tables are scored the same way
    assert sweep[0.5]["dice"] == pytest.approx(0.22 * 1.0 + 0.78 * 0.0)
    with pytest.raises(PtxsegError, match="between 0 and 1"):
        search(stats, prevalence=1.5)
    only_pos = collect(zip(probs[:30], truths[:30], strict=True))
    with pytest.raises(PtxsegError, match="needs positive and negative images"):
        search(only_pos, prevalence=0.22)
