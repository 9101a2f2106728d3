"""Autoencoder pretraining on the real unlabelled SIIM DICOMs; its encoder initialises segmentation models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ptxseg.cli import main
from ptxseg.clinical.inputs import gather_inputs
from ptxseg.errors import PtxsegError
from ptxseg.models import ConvAutoencoder, create_model
from ptxseg.optim import OptimizerConfig
from ptxseg.tasks.pretrain import pretrain

from .conftest import shared_path


def test_pretrain_on_real_dicoms_initialises_unet_and_ptxsegnet(tmp_path):
    folder = shared_path("siim", "unlabeled_dicom")
    files = gather_inputs([folder])[:24]
    assert len(files) == 24
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom at all")
    result = pretrain([*files, tmp_path / "junk.dcm"], tmp_path / "ae", encoder="resnet18", size=64, epochs=4, batch_size=8, noise=0.1)
    assert result.images == 24 and [p for p, _ in result.skipped] == [str(tmp_path / "junk.dcm")]
    assert result.losses[-1] < result.losses[0]  # it learns to reconstruct
    weights = tmp_path / "ae" / "encoder.safetensors"
    info = json.loads((tmp_path / "ae" / "encoder.json").read_text())
    assert info["encoder"] == "resnet18" and info["images"] == 24
    saved = load_file(str(weights))
    for name in ("unet", "ptxsegnet"):
        model = create_model(name, encoder="resnet18", pretrained=weights)
        enc = model.net.encoder.state_dict()
        assert all(torch.equal(enc[k], v) for k, v in saved.items())
        random = create_model(name, encoder="resnet18").net.encoder.state_dict()
        assert not torch.equal(random["layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])


def test_autoencoder_shapes_and_errors(tmp_path):
    ae = ConvAutoencoder("resnet18")
    assert ae(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    with pytest.raises(PtxsegError, match="unknown smp encoder"):
        ConvAutoencoder("resnet9000")
    with pytest.raises(PtxsegError, match="no image files"):
        pretrain([tmp_path], tmp_path / "out")
    with pytest.raises(PtxsegError, match="multiple of 32"):
        pretrain([tmp_path], tmp_path / "out", size=100)
    assert main(["pretrain", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(PtxsegError, match="no such file or directory"):
        pretrain([tmp_path / "missing"], tmp_path / "out")
    for bad in (["--optimizer", "adagrad"], ["--lr", "0"], ["--weight-decay", "-1"]):
        assert main(["pretrain", str(tmp_path), "--out", str(tmp_path / "o"), *bad]) == 2, bad


def test_pretrain_takes_its_optimiser_from_the_registry(tmp_path):
    files = gather_inputs([shared_path("siim", "unlabeled_dicom")])[:6]
    common = {"encoder": "resnet18", "size": 64, "epochs": 1, "batch_size": 3}
    sgd = OptimizerConfig(name="sgd", lr=0.01, momentum=0.9)
    pretrain(files, tmp_path / "sgd", optimizer=sgd, **common)
    pretrain(files, tmp_path / "adam", **common)
    sgd_info = json.loads((tmp_path / "sgd" / "encoder.json").read_text())
    assert sgd_info["optimizer"]["name"] == "sgd" and sgd_info["optimizer"]["lr"] == 0.01
    assert json.loads((tmp_path / "adam" / "encoder.json").read_text())["optimizer"]["name"] == "adam"
    a = load_file(str(tmp_path / "sgd" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "adam" / "encoder.safetensors"))
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])  # same seed and data: only the optimiser differs


def test_pretrain_command_reports_the_loss_and_how_to_use_the_encoder(tmp_path, capsys):
    files = gather_inputs([shared_path("siim", "unlabeled_dicom")])[:8]
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom at all")
    args = [*map(str, files), str(tmp_path / "junk.dcm"), "--out", str(tmp_path / "ae"), "--encoder", "resnet18"]
    assert main(["pretrain", *args, "--size", "64", "--epochs", "2", "--batch-size", "4", "--workers", "0", "-q"]) == 0
    captured = capsys.readouterr()
    assert "epoch 2/2: reconstruction MSE" in captured.err and f"skipped {tmp_path / 'junk.dcm'}" in captured.err
    assert "pretrained resnet18 on 8 radiographs (1 skipped), 2 epochs" in captured.out
    assert f"model.pretrained={tmp_path / 'ae' / 'encoder.safetensors'}" in captured.out
    assert (tmp_path / "ae" / "encoder.safetensors").is_file()
