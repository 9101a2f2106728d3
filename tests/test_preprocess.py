"""The preprocessing contract (issue 13): the network sees the same array in training and in ``ptxseg predict``.

* parity: a non-square DICOM (the real 1955×1841 MONOCHROME1 CR) and a non-square PNG, converted into a
  dataset and read by the training dataset, give the network input that ``ptxseg predict`` feeds it (≤ 1e-6);
* inverse: a shape carried from a source image to the network grid and back lands on the pixels it came from;
* legacy cards: a format-1 card loads with the geometry its training dataset was stored with, or is refused.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from ptxseg.artifacts.card import read_card
from ptxseg.artifacts.checkpoint import load_model, save_weights
from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.data.convert import ConvertOptions, convert_dataset
from ptxseg.data.manifest import read_dataset_info, read_manifest
from ptxseg.data.preprocess import CropSpec, Preprocessing
from ptxseg.errors import PtxsegError
from ptxseg.io.images import write_png
from ptxseg.models import create_model
from ptxseg.train.data import SegmentationDataset

from .conftest import model_card, shared_path

CROP = CropSpec(top=0.05, bottom=0.9, left=0.08, right=0.95, pad_px=10)


class _Recorder(torch.nn.Module):
    """A stand-in network that records every input it is given and answers with zero logits."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[np.ndarray] = []

    def forward(self, x):
        self.inputs.append(x.detach().cpu().numpy().copy())
        return torch.zeros_like(x)


def _predict_input(tmp_path, pp: Preprocessing, source) -> np.ndarray:
    """The array the network receives when ``ptxseg predict`` analyses ``source`` with a model of preprocessing ``pp``."""
    weights = save_weights(
        tmp_path / "model" / "best.safetensors", create_model("unet", encoder="resnet18"), model_card(preprocessing=pp.model_dump())
    )
    pipeline = ClinicalPipeline(weights.parent, lungs=False)
    recorder = _Recorder()
    pipeline.ptx.models = [recorder]
    pipeline.analyse(load_radiograph(source))
    assert len(recorder.inputs) == 1  # identity TTA: one call
    return recorder.inputs[0][0, 0]


def _train_input(dataset, pp: Preprocessing) -> np.ndarray:
    image_id = read_manifest(dataset)["id"].iloc[0]
    x, _ = SegmentationDataset(dataset, [image_id], pp)[0]  # the validation path: no augmentation
    return x.numpy()[0]


def test_parity_on_the_real_non_square_dicom(tmp_path):
    real = shared_path("dicom", "chest_pa_cr_mono1.dcm")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(real, src / "1.2.3.dcm")
    (src / "train-rle.csv").write_text("ImageId,EncodedPixels\n1.2.3,-1\n")
    data = tmp_path / "ds"
    convert_dataset(src, data, rle_format="relative", rle_shape=(1955, 1841), options=ConvertOptions(size=256), workers=1)
    info = read_dataset_info(data)
    assert (info.size, info.aspect, info.apply_voi) == (256, "pad", True)
    pp = Preprocessing(stored_size=info.size, aspect=info.aspect, crop=CROP, size=96)
    trained, predicted = _train_input(data, pp), _predict_input(tmp_path, pp, real)
    assert trained.shape == predicted.shape == (96, 96)
    assert np.abs(trained - predicted).max() <= 1e-6
    # the old inference (stretch the 1955×1841 film to the square) fed the network something else
    image = load_radiograph(real).image
    stretched = cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
    stretched = (stretched - stretched.min()) / (stretched.max() - stretched.min())
    assert np.abs((stretched - 0.5) / 0.5 - trained).max() > 0.1


def test_parity_on_a_non_square_png(tmp_path):
    rng = np.random.default_rng(0)
    image = np.tile(np.linspace(20, 230, 220), (300, 1)) + rng.normal(0, 8, (300, 220))
    cv2.circle(image, (70, 120), 30, 250, -1)  # a side-dependent shape
    src = tmp_path / "src"
    write_png(src / "train" / "png_images" / "train_image_7_0.png", np.clip(image, 0, 255).astype(np.uint8))
    write_png(src / "train" / "png_masks" / "train_mask_7_0.png", np.zeros((300, 220), np.uint8))
    data = tmp_path / "ds"
    convert_dataset(src, data, options=ConvertOptions(size=128), workers=1)
    pp = Preprocessing(stored_size=128, crop=CROP, size=64, normalize="minmax", mean=0.4, std=0.3)
    trained = _train_input(data, pp)
    predicted = _predict_input(tmp_path, pp, src / "train" / "png_images" / "train_image_7_0.png")
    assert np.abs(trained - predicted).max() <= 1e-6
    stretched = Preprocessing(stored_size=128, aspect="stretch", crop=CROP, size=64, mean=0.4, std=0.3)
    assert (
        np.abs(_predict_input(tmp_path / "s", stretched, src / "train" / "png_images" / "train_image_7_0.png") - trained).max() > 0.1
    )


@pytest.mark.parametrize("aspect", ["pad", "stretch"])
def test_a_shape_maps_back_onto_the_source_pixels_it_came_from(aspect):
    h, w = 333, 257
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (80, 200), (40, 60), 20, 0, 360, 1, -1)
    mask[30:70, 150:230] = 1
    pp = Preprocessing(stored_size=256, aspect=aspect, crop=CROP, size=128)
    _, frame = pp.network_input(np.zeros((h, w), np.float32))
    net = pp.mask_to_network(mask, frame)  # as the dataset carries a mask to the network grid
    assert net.shape == (128, 128) and net.any()
    back = pp.to_source(net.astype(np.float32), frame) >= 0.5
    inter, union = np.logical_and(back, mask).sum(), np.logical_or(back, mask).sum()
    assert inter / union > 0.93
    ys, xs = np.nonzero(mask)
    by, bx = np.nonzero(back)
    assert abs(ys.mean() - by.mean()) < 1.0 and abs(xs.mean() - bx.mean()) < 1.0  # no shift: the same pixels


def test_legacy_card_loads_with_its_datasets_geometry_or_is_refused(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.csv").write_text("id,split,positive,qc,has_image\n")
    (data / "dataset.json").write_text(
        json.dumps({"format": "ptxseg-dataset/1", "size": 512, "aspect": "stretch", "apply_voi": False})
    )
    weights = save_weights(tmp_path / "m.safetensors", create_model("unet", encoder="resnet18"), model_card())
    legacy = {
        "format": "ptxseg-checkpoint/1",
        "model": {"name": "unet", "encoder": "resnet18", "aux_classifier": False, "kwargs": {}, "in_channels": 1, "classes": 1},
        "input": {"size": 64, "normalize": "minmax", "mean": 0.5, "std": 0.5, "crop": None},
        "target": "pneumothorax",
        "operating_point": {"threshold": 0.4, "min_component_px": 0, "min_mask_px": 100, "at_size": 1024},
        "tta": ["identity", "hflip"],
        "recipe": "default",
        "training_data": {"dataset": str(data), "fold": 0, "fingerprint": "abc"},
        "metrics": {"val_dice": 0.8},
    }
    weights.with_suffix(".json").write_text(json.dumps(legacy))
    _, card = load_model(weights)
    pp = card.preprocessing
    assert (pp.stored_size, pp.aspect, pp.apply_voi, pp.size) == (512, "stretch", False, 64)
    assert card.operating_point.min_mask_px == 100 and card.tta == ["identity", "hflip"]
    shutil.rmtree(data)
    with pytest.raises(PtxsegError, match="format 1 does not record how the training images were fitted") as info:
        read_card(weights.with_suffix(".json"))
    assert info.value.code == "legacy_card"
