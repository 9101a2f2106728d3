"""``ptxseg lungs``: lung-field maps at the input's own size, areas, the quality gate, bad inputs, resume; and which
lung model ``predict`` uses (MODEL/lungs, the shipped one, --lungs, --no-lungs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from ptxseg.cli import main
from ptxseg.io.dicom import write_dicom

from .conftest import TINY


@pytest.fixture(scope="module")
def lung_run(tmp_path_factory):
    """A one-epoch lung-field model at 64² trained on phantoms (its answers are poor: the tests check plumbing)."""
    from ptxseg.config import load_config
    from ptxseg.synth.dataset import synth_dataset
    from ptxseg.train.engine import train

    root = tmp_path_factory.mktemp("lungrun")
    synth_dataset(root / "ds", 12, size=64, seed=3, positive_fraction=0.5)
    train(load_config("lungs_unet_r34_256", TINY), root / "ds", root / "lungs")
    return root / "lungs"


def test_lungs_writes_label_maps_at_the_input_size_with_areas_and_the_gate(tmp_path, lung_run):
    from ptxseg.clinical.inputs import load_radiograph
    from ptxseg.infer.predictor import Predictor
    from ptxseg.measure.lung_sides import split_lungs

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "wide.png"), (rng.random((90, 150)) * 255).astype(np.uint8))
    image = np.tile(np.arange(200, dtype=np.uint16) * 20, (260, 1))
    write_dicom(src / "pa.dcm", image, sop_instance_uid="1.2.3.9", pixel_spacing=(0.5, 0.25))
    write_dicom(src / "lat.dcm", image, sop_instance_uid="1.2.3.8", view_position="LL")
    (src / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["lungs", str(src), "--out", str(out), "--model", str(lung_run), "-q"]) == 1  # one bad input
    summary = pd.read_csv(out / "summary.csv", dtype={"id": str}).set_index("id")
    assert summary.loc["bad", "status"] == "error" and "bad.png" in summary.loc["bad", "input"]
    assert (summary.drop("bad").status == "ok").all()
    predictor = Predictor([lung_run])
    for image_id, shape in (("wide", (90, 150)), ("1.2.3.9", (260, 200))):
        labels = cv2.imread(str(out / f"{image_id}_lungs.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == shape and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
        doc = json.loads((out / f"{image_id}.json").read_text())
        assert doc["format"] == "ptxseg-lungs/1" and doc["outputs"] == {"lungs": f"{image_id}_lungs.png"}
        # the very fields the model answers, split into the patient's sides
        src_path = src / ("wide.png" if image_id == "wide" else "pa.dcm")
        fields = split_lungs(predictor.predict([load_radiograph(src_path).image])[0].mask(predictor.operating_point))
        assert np.array_equal(labels == 1, fields.right) and np.array_equal(labels == 2, fields.left)
        assert doc["right"]["area_px"] == int((labels == 1).sum()) and doc["left"]["area_px"] == int((labels == 2).sum())
        assert summary.loc[image_id, "right_area_px"] == doc["right"]["area_px"]
        qc = doc["qc"]
        assert isinstance(qc["triage_eligible"], bool) and (qc["triage_eligible"] == (qc["flags"] == []))
        assert doc["lung_model"]["path"] == str(lung_run) and doc["lung_model"]["shipped"] is False
    pa = json.loads((out / "1.2.3.9.json").read_text())
    assert pa["right"]["area_mm2"] == pytest.approx(pa["right"]["area_px"] * 0.125)
    assert json.loads((out / "wide.json").read_text())["right"]["area_mm2"] is None  # a PNG states no spacing
    lat = json.loads((out / "1.2.3.8.json").read_text())
    assert "not_frontal" in lat["qc"]["flags"] and lat["qc"]["triage_eligible"] is False
    assert summary.loc["1.2.3.8", "triage_eligible"] == False  # noqa: E712
    # resume: a second run skips complete inputs and retries the bad one
    before = (out / "wide_lungs.png").stat().st_mtime_ns
    assert main(["lungs", str(src), "--out", str(out), "--model", str(lung_run), "-q"]) == 1
    again = pd.read_csv(out / "summary.csv", dtype={"id": str}).set_index("id")
    assert (again.drop("bad").status == "skipped").all() and (out / "wide_lungs.png").stat().st_mtime_ns == before


def test_lungs_refuses_a_pneumothorax_model_and_no_model(tmp_path, lung_run, monkeypatch, capsys):
    from ptxseg.artifacts import shipped as clinical  # where the shipped lung model is looked up
    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.models import create_model

    from .conftest import model_card

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64), np.uint8))
    ptx = save_weights(tmp_path / "ptx" / "best.safetensors", create_model("unet", encoder="resnet18"), model_card())
    assert main(["lungs", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--model", str(ptx.parent)]) == 2
    assert "is a pneumothorax model, not a lung-field model" in capsys.readouterr().err
    monkeypatch.setattr(clinical, "SHIPPED_LUNG_MODEL", tmp_path / "nowhere")
    assert main(["lungs", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    assert "none ships with this installation" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_uses_a_named_or_bundled_lung_model_else_the_shipped_one(tmp_path, lung_run, monkeypatch, capsys):
    from ptxseg.artifacts import shipped as clinical  # where the shipped lung model is looked up
    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.deploy.export import export_bundle
    from ptxseg.models import create_model

    from .conftest import model_card

    shipped = export_bundle(lung_run, tmp_path / "shipped").out
    monkeypatch.setattr(clinical, "SHIPPED_LUNG_MODEL", shipped)
    ptx = save_weights(tmp_path / "ptx" / "best.safetensors", create_model("unet", encoder="resnet18"), model_card())
    cv2.imwrite(str(tmp_path / "a.png"), (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8))
    used = {}
    for name, extra in (("default", []), ("explicit", ["--lungs", str(lung_run)]), ("none", ["--no-lungs"])):
        out = tmp_path / name
        assert main(["predict", str(ptx.parent), str(tmp_path / "a.png"), "--out", str(out), "-q", *extra]) == 0
        used[name] = json.loads((out / "a.json").read_text())["lung_model"]
    assert used["default"]["path"] == str(shipped) and used["explicit"]["path"] == str(lung_run) and used["none"] is None
    # a lung model stored in the run directory (the demo's phantom one, say) is not applied unasked: the shipped
    # real one stays the default, and predict says how to use the other
    (ptx.parent / "lungs").symlink_to(lung_run)
    assert main(["predict", str(ptx.parent), str(tmp_path / "a.png"), "--out", str(tmp_path / "own"), "-q"]) == 0
    assert json.loads((tmp_path / "own" / "a.json").read_text())["lung_model"]["path"] == str(shipped)
    assert f"--lungs {ptx.parent / 'lungs'}" in capsys.readouterr().err
    # a bundle exported with --lungs carries its own, chosen by whoever exported it
    bundle = export_bundle(ptx.parent, tmp_path / "bundle", lungs=lung_run).out
    assert main(["predict", str(bundle), str(tmp_path / "a.png"), "--out", str(tmp_path / "bundled"), "-q"]) == 0
    assert json.loads((tmp_path / "bundled" / "a.json").read_text())["lung_model"]["path"] == str(bundle / "lungs")
