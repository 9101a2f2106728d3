"""Model registry: every architecture trains and infers at small size, typed outputs, encoders,
weights loading, P-DeSeRay's layout, and the ONNX round trip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ptxseg.errors import PtxsegError
from ptxseg.models import ENCODERS, SegOutput, create_model, list_models
from ptxseg.models.export import export_onnx

ARCHS = list_models()


def test_registry_names():
    assert {
        "unet",
        "unetplusplus",
        "fpn",
        "deeplabv3plus",
        "attention_unet",
        "nnunet_ds",
        "ptxsegnet",
        "uefficientnet",
        "pdeseray",
    } <= set(ARCHS)


@pytest.mark.parametrize(
    ("name", "weights", "sizes"),
    [("ptxsegnet", [0.2, 0.4, 0.6, 0.8], [4, 8, 16, 32]), ("nnunet_ds", [0.125, 0.25, 0.5], [8, 16, 32])],
)
def test_deep_supervision_heads(name, weights, sizes):
    model = create_model(name)
    model.train()
    out = model(torch.randn(2, 1, 64, 64))
    assert isinstance(out, SegOutput) and out.aux_weights == weights
    assert [a.shape for a in out.aux] == [(2, 1, s, s) for s in sizes]  # deepest (smallest) first
    sum(a.mean() for a in out.aux).backward()
    model.eval()
    assert isinstance(model(torch.randn(1, 1, 64, 64)), torch.Tensor)


def test_attention_gates_weight_every_skip():
    from ptxseg.models.gated_unet import AttentionGate

    for name in ("attention_unet", "ptxsegnet"):
        model = create_model(name, encoder="resnet34")
        gates = [g for g in model.net.gates if isinstance(g, AttentionGate)]
        assert len(gates) == 4  # skips at strides 16, 8, 4, 2
    gate = AttentionGate(8, 16).eval()
    x, g = torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8)
    out = gate(x, g)
    alpha = out / x
    assert out.shape == x.shape and (alpha > 0).all() and (alpha < 1).all()
    assert alpha.std() > 0  # spatially varying, driven by the gating signal


@pytest.mark.parametrize("name", ARCHS)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    x = torch.randn(2, 1, 64, 64)
    y = (torch.rand(2, 1, 64, 64) > 0.8).float()
    out = model(x)
    logits = out.logits if isinstance(out, SegOutput) else out
    assert logits.shape == (2, 1, 64, 64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    loss.backward()
    # every parameter the forward pass uses gets a gradient (some library encoders keep unused tails)
    params = [p for p in model.parameters() if p.requires_grad]
    with_grad = [p for p in params if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) >= 0.9 * len(params)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", ARCHS)
def test_aux_classifier(name):
    model = create_model(name, aux_classifier=True)
    model.train()
    out = model(torch.randn(2, 1, 64, 64))
    assert isinstance(out, SegOutput) and out.cls.shape == (2, 1) and out.logits.shape == (2, 1, 64, 64)
    (out.logits.mean() + out.cls.mean()).backward()
    model.eval()
    assert isinstance(model(torch.randn(1, 1, 64, 64)), torch.Tensor)  # eval: logits only


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_in_a_unet(encoder):
    model = create_model("unet", encoder=encoder).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_input_size_and_names_are_checked():
    model = create_model("unet").eval()
    with pytest.raises(PtxsegError, match="multiples of 32"):
        model(torch.randn(1, 1, 70, 64))
    with pytest.raises(PtxsegError, match="unknown architecture"):
        create_model("segformer9000")
    with pytest.raises(PtxsegError, match="own encoder"):
        create_model("pdeseray", encoder="resnet34")


def test_uefficientnet_dropout_only_in_training():
    torch.manual_seed(0)
    model = create_model("uefficientnet")
    x = torch.randn(1, 1, 64, 64)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)  # dropout active
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_pdeseray_layout():
    model = create_model("pdeseray")
    enc = model.net.encoder
    stem_conv, stem_norm = enc.stem[0], enc.stem[1]
    assert stem_conv.kernel_size == (4, 4) and stem_conv.stride == (4, 4) and stem_conv.in_channels == 1
    assert "LayerNorm" in type(stem_norm).__name__
    assert [len(s.blocks) for s in enc.stages] == [3, 3, 9, 3]
    assert [s.blocks[0].mlp.fc2.out_features for s in enc.stages] == [96, 192, 384, 768]
    block = enc.stages[2].blocks[0]
    assert block.conv_dw.kernel_size == (7, 7) and block.conv_dw.groups == 384
    assert block.mlp.fc1.out_features == 4 * 384 and block.gamma is not None  # ×4 expansion, layer scale
    for k in (1, 2, 3):  # 2×2 stride-2 downsampling between stages
        down = enc.stages[k].downsample[1]
        assert down.kernel_size == (2, 2) and down.stride == (2, 2)
    dec = model.net.decoder
    assert [stage.convs[1][0].out_channels for stage in dec] == [256, 128, 64, 32, 16]
    # the 4th decoder stage takes the stem output (96 channels) as its skip
    assert dec[3].convs[0][0].in_channels == 64 + 96 and dec[4].convs[0][0].in_channels == 32
    assert model.net.head.kernel_size == (3, 3)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - 31.9) < 0.3


def test_local_safetensors_weights_adapt_rgb(tmp_path):
    from safetensors.torch import save_file

    rgb = create_model("unet", in_channels=3)
    state = {k: v.contiguous() for k, v in rgb.net.encoder.state_dict().items()}
    save_file(state, tmp_path / "enc.safetensors")
    gray = create_model("unet", in_channels=1, pretrained=tmp_path / "enc.safetensors")
    first = gray.net.encoder.conv1.weight
    torch.testing.assert_close(first, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(gray.net.encoder.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])
    (tmp_path / "w.pth").write_bytes(b"pickle")
    with pytest.raises(PtxsegError, match="safetensors"):
        create_model("unet", pretrained=tmp_path / "w.pth")


def test_a_whole_trained_model_is_a_starting_point(tmp_path):
    from safetensors.torch import save_file

    trained = create_model("unet", encoder="resnet18")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, tmp_path / "best.safetensors")  # as a run saves it
    tuned = create_model("unet", encoder="resnet18", pretrained=tmp_path / "best.safetensors")
    for key, value in trained.state_dict().items():  # decoder and head too, not only the encoder
        torch.testing.assert_close(tuned.state_dict()[key], value, msg=key)


def test_imagenet_offline_is_one_clear_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = "from ptxseg.models import create_model\ncreate_model('unet', pretrained='imagenet')"
    script = f"from ptxseg.errors import PtxsegError\ntry:\n    exec({code!r})\nexcept PtxsegError as e:\n    print(e)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "cannot download ImageNet weights" in proc.stdout and "pretrained=PATH" in proc.stdout


@pytest.mark.parametrize("name", ARCHS)
def test_onnx_round_trip(name, tmp_path):
    model = create_model(name)
    err = export_onnx(model, tmp_path / f"{name}.onnx", size=64)
    assert err <= 1e-4 and (tmp_path / f"{name}.onnx").stat().st_size > 1000
