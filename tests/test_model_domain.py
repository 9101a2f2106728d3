"""What a model was trained on travels with it: synth and convert record each image's domain, training records
it in the card, and every per-film output of a model trained on synthetic data says so (JSON, summary.csv, the
overlay's first line, the DICOM SC and SR, the viewer), while a model trained on real films says nothing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

from ptxseg.artifacts.card import TrainingData, synthetic_warning, training_domains
from ptxseg.artifacts.card_markdown import INTENDED_USE, intended_use
from ptxseg.cli import main
from ptxseg.clinical.render import RED, SYNTHETIC_LINE, clinical_overlay
from ptxseg.data.convert import convert_dataset
from ptxseg.data.manifest import dataset_domains
from ptxseg.synth.dataset import synth_dataset

from .conftest import model_card, shared_path
from .dicomcheck import dciodvfy_errors, needs_dciodvfy

REAL_CR = "dicom/chest_pa_cr_mono1.dcm"


@pytest.mark.parametrize("layout", ["kaggle", "png", "canonical"])
def test_phantoms_are_recorded_as_phantoms_through_convert(tmp_path, layout):
    source = tmp_path / "src"
    synth_dataset(source, 4, size=64, seed=3, layout=layout, positive_fraction=0.5)
    if layout == "canonical":
        dataset = source
    else:
        dataset = tmp_path / "ds"
        convert_dataset(source, dataset, rle_shape=(64, 64), workers=1)
    assert dataset_domains(dataset) == {"phantom": 4}


def test_a_source_that_states_no_domain_is_not_called_anything(tmp_path):
    source = tmp_path / "src"
    synth_dataset(source, 3, size=64, seed=4, layout="kaggle")
    (source / "manifest.csv").unlink()  # a real challenge tree has no such file
    convert_dataset(source, tmp_path / "ds", rle_shape=(64, 64), workers=1)
    assert dataset_domains(tmp_path / "ds") is None


def test_the_warning_names_what_the_model_saw():
    phantom = model_card(training_data=TrainingData(domains={"phantom": 191}))
    mixed = model_card(training_data=TrainingData(domains={"real": 100, "inserted_lesions": 50}))
    real = model_card(training_data=TrainingData(domains={"real": 1066}))
    assert "trained on synthetic data (191 of 191 images synthetic phantoms)" in synthetic_warning(phantom)
    assert "50 of 150 images real radiographs with inserted synthetic lesions" in synthetic_warning(mixed)
    assert synthetic_warning(real) is None and synthetic_warning(model_card()) is None  # real, or unknown: silent
    # the card's intended use follows its data
    assert intended_use(real) == INTENDED_USE["pneumothorax"]
    text = "\n".join(intended_use(phantom))
    assert "testing the software only" in text and "Frontal (PA/AP) adult" not in text


def test_a_card_from_before_domains_reads_them_from_its_dataset(tmp_path):
    synth_dataset(tmp_path / "ds", 3, size=64, seed=5)
    card = model_card(training_data=TrainingData(dataset=str(tmp_path / "ds")))
    assert training_domains(card) == {"phantom": 3} and synthetic_warning(card)


def _model(tmp_path, name: str, domains: dict[str, int]):
    import torch

    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.models import create_model

    torch.manual_seed(0)
    card = model_card(training_data=TrainingData(domains=domains))
    return save_weights(tmp_path / name / "best.safetensors", create_model("unet", encoder="resnet18"), card).parent


def _red_panel_pixels(overlay: np.ndarray) -> int:
    return int(np.all(np.abs(overlay.astype(int) - RED) <= 30, axis=2).sum())


def test_every_output_of_a_phantom_model_says_so_and_a_real_one_says_nothing(tmp_path, capsys):
    film = shared_path(REAL_CR)
    docs, overlays, summaries = {}, {}, {}
    for name, domains in (("phantom", {"phantom": 191}), ("real", {"real": 1066})):
        model = _model(tmp_path, name, domains)
        out = tmp_path / f"out_{name}"
        assert main(["predict", str(model), str(film), "--out", str(out), "-q"]) == 0
        summaries[name] = pd.read_csv(out / "summary.csv", keep_default_na=False).iloc[0]
        docs[name] = json.loads((out / f"{summaries[name]['id']}.json").read_text())
        overlays[name] = cv2.cvtColor(cv2.imread(str(out / docs[name]["outputs"]["overlay"])), cv2.COLOR_BGR2RGB)
        captured = capsys.readouterr()
        assert ("warning: the pneumothorax model was trained on synthetic data" in captured.err) == (name == "phantom")
    phantom, real = docs["phantom"], docs["real"]
    assert phantom["model"]["training_domains"] == {"phantom": 191} and real["model"]["training_domains"] == {"real": 1066}
    assert phantom["model_warnings"] == [phantom["model"]["warning"]] and "synthetic phantoms" in phantom["model"]["warning"]
    assert real["model_warnings"] == [] and real["model"]["warning"] is None
    assert summaries["phantom"]["model_warning"] == phantom["model"]["warning"] and summaries["real"]["model_warning"] == ""
    # the overlay's findings panel opens with the warning in red; the real model's has no red line
    assert _red_panel_pixels(overlays["phantom"]) > 200 and _red_panel_pixels(overlays["real"]) == 0
    # the lung model used by default is the shipped real one: no warning of its own
    assert phantom["lung_model"]["shipped"] and phantom["lung_model"]["warning"] is None


def test_the_panel_line_comes_from_the_document():
    image = np.full((256, 256), 0.5, np.float32)
    doc = {
        "pneumothorax": {"present": False, "probability": 0.1},
        "right": {"ratio_pct": None},
        "left": {"ratio_pct": None},
        "lungs": {"found": False},
        "qc": {},
    }
    plain = clinical_overlay(image, np.zeros((256, 256), bool), None, doc)
    warned = clinical_overlay(image, np.zeros((256, 256), bool), None, doc | {"model_warnings": ["x"]})
    assert _red_panel_pixels(plain) == 0 and _red_panel_pixels(warned) > 200 and SYNTHETIC_LINE.isupper()


@needs_dciodvfy
def test_the_pacs_objects_of_a_phantom_model_carry_the_warning_and_validate(tmp_path):
    from ptxseg.clinical.inputs import load_radiograph
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.tasks.dicom_results import derive

    film = shared_path(REAL_CR)
    results = {}
    for name, domains in (("phantom", {"phantom": 191}), ("real", {"real": 1066})):
        pipeline = ClinicalPipeline(_model(tmp_path, name, domains))
        results[name] = derive(pipeline, load_radiograph(film), tmp_path / f"pacs_{name}")
    for name, r in results.items():
        sc, sr = pydicom.dcmread(r.sc), pydicom.dcmread(r.sr)
        synthetic = name == "phantom"
        assert ("trained on synthetic data" in sc.ImageComments) == synthetic
        assert ("SYNTHETIC-TRAINED" in sc.SeriesDescription) == synthetic
        assert ("SYNTHETIC-TRAINED" in sr.SeriesDescription) == synthetic
        texts = [str(getattr(item, "TextValue", "")) for item in _walk(sr)]  # the device observer's model name
        assert any("SYNTHETIC-TRAINED" in t for t in texts) == synthetic
        assert dciodvfy_errors(r.sc) == [] and dciodvfy_errors(r.sr) == []
    # the burnt-in warning band below the capture is taller for the phantom model
    rows = {name: pydicom.dcmread(r.sc).Rows for name, r in results.items()}
    assert rows["phantom"] > rows["real"]


def _walk(ds):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk(item)
