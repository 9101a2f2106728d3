"""``ptxseg export`` and ONNX Runtime bundles (issue 13): verified against PyTorch, the classifier head deployed,
INT8 measured and refused when it loses too much, hashes enforced, and every command accepting a bundle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ptxseg.artifacts.bundle import read_bundle
from ptxseg.cli import main
from ptxseg.deploy.export import export_bundle
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor
from ptxseg.infer.tta import TTA_TRANSFORMS, tta_members_with_cls
from ptxseg.io.dicom import write_dicom
from ptxseg.io.images import read_image

from .conftest import tiny_models

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch model with a classifier head and a lung-field model at MODEL/lungs, on 24 phantoms; fp32 bundle
    with that lung model (named: a run directory's own is not bundled unasked)."""
    root = tmp_path_factory.mktemp("export")
    data, run = tiny_models(24, seed=21, extra=("model.aux_classifier=true",), lungs=True)
    result = export_bundle(run, root / "bundle", lungs=run / "lungs")
    return data, run, result


def test_fp32_bundle_matches_pytorch_and_deploys_the_head(trained):
    data, run, result = trained
    bundle = result.out
    manifest, cards = read_bundle(bundle)
    assert result.precision == "fp32" and result.verification < 1e-4 and result.lungs.out == bundle / "lungs"
    assert manifest.members[0].outputs == ["logits", "cls"] and cards[0].model.aux_classifier
    assert cards[0].lung_model.path == "lungs" and cards[0].lung_model.version == Predictor([bundle / "lungs"]).version
    assert {"member-0.onnx", "member-0.json", "MODEL_CARD.md", "lungs/bundle.json", "lungs/member-0.onnx"} <= set(manifest.files)
    assert "not a medical device" in (bundle / "MODEL_CARD.md").read_text()
    torch_model, onnx_model = Predictor([run]), Predictor([bundle])
    assert onnx_model.backend == "onnxruntime fp32" and onnx_model.tta == torch_model.tta
    assert onnx_model.operating_point == torch_model.operating_point
    images = [read_image(p) for p in sorted((data / "images").glob("*.png"))[:4]]
    for a, b in zip(torch_model.predict(images), onnx_model.predict(images), strict=True):
        assert b.cls_prob is not None  # the head's output travels: a classifier gate works deployed
        assert np.abs(a.prob - b.prob).max() < 1e-4 and a.cls_prob == pytest.approx(b.cls_prob, abs=1e-5)
        np.testing.assert_array_equal(a.mask(torch_model.operating_point), b.mask(onnx_model.operating_point))


def test_commands_accept_a_bundle(trained, tmp_path):
    data, run, result = trained
    out = {}
    for name, model in (("torch", run), ("onnx", result.out)):
        out[name] = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", str(model), "--data", str(data), "--fold", "0", "--json", str(out[name]), "-q"]) == 0
    dice = {k: json.loads(v.read_text())["mean_dice"] for k, v in out.items()}
    assert dice["onnx"] == pytest.approx(dice["torch"], abs=1e-9)
    image = read_image(sorted((data / "images").glob("*.png"))[0])
    write_dicom(tmp_path / "in" / "a.dcm", np.round(image * 65535).astype(np.uint16), sop_instance_uid="1.2.3.4")
    assert (
        main(["predict", str(result.out), str(tmp_path / "in"), "--out", str(tmp_path / "pred"), "--seg", "--threads", "1", "-q"]) == 0
    )
    doc = json.loads((tmp_path / "pred" / "1.2.3.4.json").read_text())
    assert doc["model"]["backend"] == "onnxruntime fp32" and doc["lung_model"]["version"].endswith("onnxruntime fp32")
    assert (tmp_path / "pred" / doc["outputs"]["seg"]).is_file()
    assert main(["report", str(tmp_path / "onnx.json"), "--out", str(tmp_path / "rep"), "-q"]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    assert (
        main(["submit", "--model", str(result.out), "--data", str(data), "--split", "train", "--out", str(tmp_path / "s.csv"), "-q"])
        == 0
    )
    assert len(pd.read_csv(tmp_path / "s.csv")) == 24
    assert main(["tune", str(result.out), "-q"]) == 2  # a bundle is tuned through its run directory


def test_a_tampered_bundle_is_refused(trained, tmp_path):
    import shutil

    _, _, result = trained
    copy = tmp_path / "bundle"
    shutil.copytree(result.out, copy)
    raw = bytearray((copy / "member-0.onnx").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / "member-0.onnx").write_bytes(bytes(raw))
    with pytest.raises(PtxsegError, match="member-0.onnx: does not match the sha256 recorded in bundle.json"):
        Predictor([copy])
    (copy / "member-0.onnx").unlink()
    with pytest.raises(PtxsegError, match="listed in bundle.json but missing"):
        Predictor([copy])


def test_int8_bundle_is_measured_and_recorded(trained, tmp_path):
    data, run, _ = trained
    result = export_bundle(run, tmp_path / "int8", int8=True, calib=data, lungs=False, calib_images=12, tolerance=0.2)
    q = result.quantization
    ids = pd.read_csv(data / "folds.csv", dtype={"id": str}).query("fold == 0")["id"].tolist()  # the validation fold
    assert result.precision == "int8" and q["eval_images"] == len(ids) and q["calibration_images"] == 12
    manifest, cards = read_bundle(result.out)
    assert manifest.quantization["dice_int8"] == q["dice_int8"] and cards[0].metrics["int8"]["dice_fp32"] == q["dice_fp32"]
    assert manifest.members[0].onnx == "member-0.int8.onnx" and not (result.out / "member-0.onnx").exists()
    assert "INT8" in (result.out / "MODEL_CARD.md").read_text()
    predictor = Predictor([result.out])
    assert predictor.backend == "onnxruntime int8"
    from ptxseg.tasks.evaluate import evaluate_model

    assert evaluate_model(predictor, data, ids, n_boot=0).metrics["mean_dice"] == pytest.approx(q["dice_int8"])
    # the fp32 figure is the unquantised model's own Dice on the same images, measured independently here
    assert evaluate_model(Predictor([run]), data, ids, n_boot=0).metrics["mean_dice"] == pytest.approx(q["dice_fp32"], abs=1e-3)


def test_int8_that_loses_too_much_is_refused(trained, tmp_path, monkeypatch):
    import ptxseg.deploy.export as export_module

    data, run, _ = trained
    measured = iter([0.80, 0.78])  # fp32, then INT8: 0.02 lost
    monkeypatch.setattr(export_module, "_dice", lambda *args, **kwargs: next(measured))
    with pytest.raises(PtxsegError, match=r"INT8 validation SIIM mean Dice 0.7800 is 0.0200 below fp32 0.8000 .*tolerance 0.005"):
        export_bundle(run, tmp_path / "refused", int8=True, calib=data, lungs=False, calib_images=4)
    assert not (tmp_path / "refused").exists() and not list(tmp_path.glob(".refused*"))  # nothing half-made
    with pytest.raises(PtxsegError, match="needs --calib"):
        export_bundle(run, tmp_path / "x", int8=True)


def test_tta_runs_as_one_batch_with_the_same_answer():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = torch.randn(2, 1, 32, 32)
    batched, _ = tta_members_with_cls(conv, x, list(TTA_TRANSFORMS))
    for k, name in enumerate(TTA_TRANSFORMS):
        one, _ = tta_members_with_cls(conv, x, [name])  # a single transform: no batching
        assert torch.allclose(batched[k], one[0], atol=1e-6)


def test_export_command_writes_a_bundle_and_says_what_it_verified(trained, tmp_path, capsys):
    _, run, _ = trained
    out = tmp_path / "cli_bundle"
    assert main(["export", str(run), "--out", str(tmp_path / "plain"), "-q"]) == 0
    captured = capsys.readouterr()
    # the run's own (phantom-trained) lung model is not bundled unasked: predict and serve use the shipped one
    assert "lung-field model:" not in captured.out and not (tmp_path / "plain" / "lungs").exists()
    assert f"{run / 'lungs'} is not bundled unless named" in captured.err
    assert main(["export", str(run), "--out", str(out), "--lungs", str(run / "lungs"), "-q"]) == 0
    printed = capsys.readouterr().out
    manifest, _ = read_bundle(out)
    assert f"bundle {out}: 1 model(s), fp32" in printed and "lung-field model:" in printed
    assert manifest.members[0].outputs == ["logits", "cls"] and (out / "lungs" / "bundle.json").is_file()
    assert main(["export", str(run), "--out", str(tmp_path / "b2"), "--no-lungs", "--lungs", str(run / "lungs"), "-q"]) == 2
    assert "--lungs or --no-lungs" in capsys.readouterr().err and not (tmp_path / "b2").exists()


def test_card_notes_are_appended_to_the_model_card_and_hashed(trained, tmp_path, capsys):
    _, run, _ = trained
    notes = tmp_path / "notes.md"
    notes.write_text("## Out-of-fold results\n- measured elsewhere: 0.123\n", encoding="utf-8")
    out = tmp_path / "noted"
    assert main(["export", str(run), "--out", str(out), "--no-lungs", "--card-notes", str(notes), "-q"]) == 0
    text = (out / "MODEL_CARD.md").read_text()
    assert text.rstrip().endswith("- measured elsewhere: 0.123") and "not a medical device" in text
    manifest, _ = read_bundle(out)  # the notes are inside the hashed card: the bundle verifies
    assert "MODEL_CARD.md" in manifest.files
    assert main(["export", str(run), "--out", str(tmp_path / "x"), "--card-notes", str(tmp_path / "none.md"), "-q"]) == 2
    assert "none.md" in capsys.readouterr().err and not (tmp_path / "x").exists()
