"""``ptxseg predict`` end to end: DICOM (real MONOCHROME1 and phantoms), PNG and a corrupt file → JSON, mask,
overlay, DICOM SEG read back, summary.csv, resume; lung-field models trained with the same engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest

from ptxseg.cli import main
from ptxseg.io.dicom import write_dicom
from ptxseg.io.images import read_image, read_mask

from .conftest import shared_path, tiny_models
from .dicomcheck import dciodvfy_errors, needs_dciodvfy

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A one-epoch pneumothorax model with a one-epoch lung-field model stored at MODEL/lungs (used where a test
    names it: predict's default is the shipped real lung model), on 16 phantoms."""
    return tiny_models(16, seed=11, lungs=True)


def _inputs(tmp_path, data):
    """Two phantoms written as DICOM (with PixelSpacing), one as PNG, the real MONOCHROME1 CR, a corrupt DICOM."""
    manifest = pd.read_csv(data / "manifest.csv", dtype={"id": str})
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    for k, image_id in enumerate(manifest["id"][:2]):
        pixels = np.round(read_image(data / "images" / f"{image_id}.png") * 255).astype(np.uint8)
        write_dicom(folder / f"ph{k}.dcm", pixels, sop_instance_uid=f"1.2.826.0.1.3680043.8.498.{k + 1}", pixel_spacing=(0.5, 0.5))
    png = tmp_path / "in" / "phantom.png"
    png.write_bytes((data / "images" / f"{manifest['id'][2]}.png").read_bytes())
    (tmp_path / "in" / "broken.dcm").write_bytes(b"DICM" * 10)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a list file\n{shared_path(REAL_CR)}\n")
    return [tmp_path / "in", listing]


REAL_CR = "dicom/chest_pa_cr_mono1.dcm"


@pytest.fixture(scope="module")
def batch(models, tmp_path_factory):
    """``ptxseg predict --seg`` on the five inputs of :func:`_inputs`, with the model's operating point lowered to
    0.45 so that the one-epoch model outlines something on every image (masks, sides and SEG frames are then not
    trivially empty). Returns the command's arguments, its exit status, summary.csv and the documents by id."""
    data, run = models
    root = tmp_path_factory.mktemp("batch")
    model = root / "model"
    shutil.copytree(run, model)
    card = json.loads((model / "best.json").read_text())
    card["operating_point"] = {**card["operating_point"], "threshold": 0.45, "min_mask_px": 0, "min_component_px": 0}
    (model / "best.json").write_text(json.dumps(card))
    out = root / "out"
    args = ["predict", str(model), *map(str, _inputs(root, data)), "--out", str(out), "--seg", "-q", "--workers", "2"]
    status = main(args)
    summary = pd.read_csv(out / "summary.csv")
    docs = {row["id"]: json.loads((out / f"{row['id']}.json").read_text()) for _, row in summary[summary["status"] == "ok"].iterrows()}
    return {"args": args, "status": status, "out": out, "summary": summary, "docs": docs}


def test_a_corrupt_file_fails_the_exit_status_not_the_batch(batch):
    summary = batch["summary"]
    assert batch["status"] == 1 and len(summary) == 5 and summary["status"].tolist().count("ok") == 4
    bad = summary[summary["status"] == "error"].iloc[0]
    assert bad["input"].endswith("broken.dcm") and "DICOM" in bad["reason"] and summary.index[-1] == bad.name  # failures last


def test_results_are_listed_in_triage_order(batch):
    ranks = batch["summary"]["max_severity"].map({"severe": 3, "moderate": 2, "mild": 1, "none": 0})[:4]
    assert ranks.notna().all() and list(ranks) == sorted(ranks, reverse=True)


def test_each_answer_has_its_mask_overlay_and_model(batch):
    out = batch["out"]
    for doc in batch["docs"].values():
        assert doc["format"] == "ptxseg-prediction/1" and doc["model"]["version"].startswith("ptxseg ")
        assert doc["lung_model"] is not None and doc["uncertainty"]["members"] == 2  # identity + hflip
        mask = read_mask(out / doc["outputs"]["mask"])
        assert mask.shape == (doc["input"]["rows"], doc["input"]["columns"])
        assert int(mask.sum()) == doc["pneumothorax"]["area_px"] > 0
        assert (out / doc["outputs"]["overlay"]).is_file()


def test_sides_add_up_and_millimetres_follow_the_pixel_spacing(batch):
    docs = batch["docs"]
    assert all(doc["lungs"]["found"] for doc in docs.values())  # the shipped lung model finds fields on all four
    for doc in docs.values():
        for side in ("right", "left"):
            assert set(doc[side]) == {"area_px", "area_mm2", "lung_area_px", "lung_area_mm2", "ratio_pct", "severity", "lesions"}
        assert doc["right"]["area_px"] + doc["left"]["area_px"] + doc["unassigned_px"] == doc["pneumothorax"]["area_px"]
    spaced = [d for d in docs.values() if d["input"]["pixel_spacing_mm"] == [0.5, 0.5]]
    assert len(spaced) == 2  # the two phantoms written with PixelSpacing 0.5 mm
    for doc in spaced:
        for side in ("right", "left"):
            assert doc[side]["lung_area_mm2"] == pytest.approx(doc[side]["lung_area_px"] * 0.25)
            assert doc[side]["area_mm2"] == pytest.approx(doc[side]["area_px"] * 0.25)
    real_uid = pydicom.dcmread(shared_path(REAL_CR), stop_before_pixels=True).SOPInstanceUID
    real = next(d for d in docs.values() if d["input"].get("SOPInstanceUID") == real_uid)
    assert (real["input"]["rows"], real["input"]["columns"]) == (1955, 1841)
    assert real["input"]["pixel_spacing_mm"] is None and real["right"]["area_mm2"] is None  # no spacing: no mm²


def test_an_image_input_gets_no_seg_and_says_why(batch):
    images = [d for d in batch["docs"].values() if d["input"]["kind"] != "dicom"]
    assert len(images) == 1
    assert images[0]["outputs"]["seg"] is None and "not a DICOM" in images[0]["seg_note"]


def test_seg_is_full_resolution_and_references_its_source(batch):
    out = batch["out"]
    dicoms = [d for d in batch["docs"].values() if d["input"]["kind"] == "dicom"]
    assert len(dicoms) == 3
    for doc in dicoms:
        mask = read_mask(out / doc["outputs"]["mask"])
        seg = hd.seg.segread(out / doc["outputs"]["seg"])
        assert (seg.Rows, seg.Columns) == mask.shape and seg.SegmentationType == "BINARY"
        assert seg.StudyInstanceUID == doc["input"]["StudyInstanceUID"]
        assert seg.get_segment_description(1).segmented_property_type.value == "36118008"  # SCT Pneumothorax
        refs = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
        assert refs == {doc["input"]["SOPInstanceUID"]}
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == doc["input"]["SeriesInstanceUID"]
        uid = doc["input"]["SOPInstanceUID"]
        stored = seg.get_pixels_by_source_instance([uid], segment_numbers=[1], combine_segments=False)[0, ..., 0]
        assert stored.any() and np.array_equal(stored.astype(bool), mask.astype(bool))
        assert pydicom.dcmread(out / doc["outputs"]["seg"]).Modality == "SEG"


@needs_dciodvfy
def test_every_seg_and_phantom_dicom_passes_dciodvfy(batch):
    written = [batch["out"] / d["outputs"]["seg"] for d in batch["docs"].values() if d["input"]["kind"] == "dicom"]
    phantoms = sorted((Path(batch["args"][2]) / "nested").glob("*.dcm"))  # written by ptxseg.io.dicom.write_dicom
    assert len(written) == 3 and len(phantoms) == 2
    for path in written + phantoms:
        assert dciodvfy_errors(path) == [], path.name


def test_a_rerun_skips_complete_answers_and_redoes_incomplete_or_stale_ones(batch, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(batch["out"], out)
    args = [*batch["args"][: batch["args"].index("--out") + 1], str(out), *batch["args"][batch["args"].index("--out") + 2 :]]
    first = next(iter(batch["docs"]))
    (out / f"{first}_overlay.png").unlink()
    assert main(args) == 1
    again = pd.read_csv(out / "summary.csv").set_index("id")
    assert again.loc[first, "status"] == "ok" and (again["status"] == "skipped").sum() == 3
    assert main([*args, "--cam"]) == 1  # an output asked for now but not made before: redone
    assert (pd.read_csv(out / "summary.csv")["status"] == "ok").sum() == 4
    stale = out / f"{first}.json"
    doc = json.loads(stale.read_text())
    doc["model"]["version"] = "ptxseg 0.0.0 / weights 000000000000"  # made by another model
    stale.write_text(json.dumps(doc))
    assert main([*args, "--cam"]) == 1
    last = pd.read_csv(out / "summary.csv").set_index("id")
    assert last.loc[first, "status"] == "ok" and (last["status"] == "skipped").sum() == 3


def test_without_a_lung_model_every_side_key_is_null_and_says_why(models, tmp_path):
    data, run = models
    image = sorted((data / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    cmd = ["predict", str(run), str(image), "--out", str(out), "--no-lungs", "-q", "--no-overlay", "--cam", "--mc-dropout", "2"]
    assert main(cmd) == 0
    doc = json.loads((out / f"{image.stem}.json").read_text())
    heat = cv2.imread(str(out / doc["outputs"]["cam"]))
    assert heat.shape == (640, 640, 3) and heat.std(axis=2).max() > 0  # 64² phantom shown at 640², coloured
    assert doc["lung_model"] is None and doc["right"]["ratio_pct"] is None and doc["left"]["severity"] is None
    assert "no lung-field model" in doc["lungs"]["notes"][0] and doc["outputs"]["overlay"] is None
    assert doc["uncertainty"]["mc_dropout_passes"] == 0 and doc["uncertainty"]["members"] == 2  # a U-Net has no dropout
    assert main(["predict", str(run / "lungs"), str(image), "--out", str(out)]) == 2  # a lung model is not a pneumothorax model
    assert main(["predict", str(run), str(tmp_path / "nothing-here"), "--out", str(out)]) == 1


def test_lung_model_is_evaluated_against_the_lung_fields(models, tmp_path):
    data, run = models
    meta = json.loads((run / "lungs" / "best.json").read_text())
    assert meta["target"] == "lungs"
    out = tmp_path / "lungs_eval.json"
    fold = str(meta["training_data"]["fold"])
    assert main(["evaluate", "--model", str(run / "lungs"), "--data", str(data), "--fold", fold, "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["positives"] == doc["images"]  # every phantom has lung fields: the truth came from lungs/, not masks/


@pytest.mark.parametrize("name", ["unet", "nnunet_ds", "pdeseray"])
def test_grad_cam_maps_every_architecture_family(name):
    import torch

    from ptxseg.clinical.explain import grad_cam
    from ptxseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    x = torch.rand(1, 1, 128, 128)
    cam = grad_cam(model, x)
    assert cam.shape == (128, 128) and cam.min() >= 0 and cam.max() == pytest.approx(1.0) and cam.std() > 0
    assert model.training  # the mode is restored
    region = np.zeros((128, 128), bool)
    region[:32, :32] = True
    assert not np.allclose(grad_cam(model, x, region), cam)  # the explained region matters


def test_inputs_ids_and_list_files(tmp_path):
    from ptxseg.clinical.inputs import gather_inputs, unique_ids

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "chest.png"), np.zeros((8, 8), np.uint8))
    write_dicom(tmp_path / "a" / "noext", np.zeros((8, 8), np.uint8), sop_instance_uid="1.2.3.4")  # no suffix
    (tmp_path / "a" / "notes.txt").write_text("not an input\n")  # a folder's other files are ignored
    (tmp_path / "b" / "bad.dcm").write_bytes(b"junk")
    (tmp_path / "list.txt").write_text("# inputs\nb/bad.dcm\n\na/chest.png\n")
    paths = gather_inputs([tmp_path / "a", tmp_path / "b", tmp_path / "list.txt"])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a/chest.png", "a/noext", "b/bad.dcm", "b/chest.png"]
    assert unique_ids(paths) == ["chest", "1.2.3.4", "bad", "chest_2"]


def test_qc_travels_to_json_summary_and_overlay(tmp_path):
    """A lateral film is analysed, and says so everywhere a reader looks (issue 13: QC travels)."""
    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.clinical.render import clinical_overlay, findings_lines
    from ptxseg.models import create_model

    from .conftest import model_card

    model = save_weights(tmp_path / "m" / "best.safetensors", create_model("unet", encoder="resnet18"), model_card())
    ramp = np.tile(np.arange(300, dtype=np.uint16) * 10, (300, 1))
    write_dicom(tmp_path / "in" / "lat.dcm", ramp, sop_instance_uid="1.2.3.1", view_position="LL")
    write_dicom(tmp_path / "in" / "pa.dcm", ramp, sop_instance_uid="1.2.3.2")
    out = tmp_path / "out"
    assert main(["predict", str(model.parent), str(tmp_path / "in"), "--out", str(out), "--no-lungs", "-q"]) == 0
    summary = pd.read_csv(out / "summary.csv", dtype={"id": str}).set_index("id")
    assert summary.loc["1.2.3.1", "qc"] == "lateral_view;not_frontal" and summary.loc["1.2.3.2", "qc"] == "no_lung_model"
    assert not summary.loc["1.2.3.1", "triage_eligible"] and pd.isna(summary.loc["1.2.3.2", "triage_eligible"])
    lateral = json.loads((out / "1.2.3.1.json").read_text())
    assert lateral["qc"]["verdict"] == "warning" and lateral["qc"]["warnings"] == ["lateral_view"]
    assert lateral["qc"]["flags"] == ["not_frontal"] and lateral["qc"]["triage_eligible"] is False
    assert "lateral" in lateral["qc"]["meaning"]["lateral_view"].lower() and "frontal" in lateral["qc"]["triage_reasons"][0]
    frontal = json.loads((out / "1.2.3.2.json").read_text())["qc"]
    assert frontal["verdict"] == "ok" and frontal["warnings"] == [] and frontal["triage_eligible"] is None
    assert frontal["flags"] == ["no_lung_model"]  # without lung fields the gate cannot say yes
    assert [line for line, _ in findings_lines(lateral)[-2:]] == [
        "QC: lateral_view - check the input",
        "NOT FIT FOR TRIAGE: not_frontal",
    ]
    plain = {**lateral, "qc": {"verdict": "ok", "warnings": [], "meaning": {}}}
    image = ramp.astype(np.float32) / ramp.max()
    mask = np.zeros_like(image, bool)
    with_qc, without = clinical_overlay(image, mask, None, lateral), clinical_overlay(image, mask, None, plain)
    assert with_qc.shape == without.shape and (with_qc != without).any()  # the panel carries the extra line
