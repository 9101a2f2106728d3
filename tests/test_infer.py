"""TTA inverts exactly; ensembles average; the predictor maps probabilities back to the input frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptxseg.checkpoint import save_weights
from ptxseg.errors import PtxsegError
from ptxseg.infer import TTA_TRANSFORMS, Predictor, load_probability_map, save_probability_map, tta_members, tta_predict
from ptxseg.models import create_model


class LogitOfInput(torch.nn.Module):
    """Returns the input as logits: the exact answer of any TTA member is sigmoid(input)."""

    def forward(self, x):
        return x


def test_tta_members_invert_exactly_on_a_non_symmetric_image():
    x = torch.zeros(1, 1, 40, 40)
    x[..., 2:9, 3:20] = 4.0  # an L shape near the top-left corner: no flip or rotation maps it onto itself
    x[..., 9:25, 3:7] = -3.0
    members = tta_members(LogitOfInput(), x, list(TTA_TRANSFORMS))
    assert members.shape == (5, 1, 1, 40, 40)
    for m in members:
        assert torch.equal(m, torch.sigmoid(x))  # each member mapped back exactly
    for name, (fwd, _) in TTA_TRANSFORMS.items():
        if name != "identity":
            assert not torch.equal(fwd(x), x)  # the transforms really move pixels, so the check above is not vacuous
    wide = torch.zeros(1, 1, 32, 48)
    wide[..., 5:9, 3:30] = 2.0
    for name in ("identity", "hflip", "vflip"):
        assert torch.equal(tta_members(LogitOfInput(), wide, [name])[0], torch.sigmoid(wide))
    with pytest.raises(PtxsegError, match="unknown transform 'rot180'"):
        tta_predict(LogitOfInput(), x, ["rot180"])


def _bundle(tmp_path, name="m", crop=None, seed=0):
    torch.manual_seed(seed)
    model = create_model("unet", encoder="resnet18")
    meta = {
        "model": {"name": "unet", "encoder": "resnet18"},
        "input": {"size": 64, "normalize": "minmax", "mean": 0.5, "std": 0.5, "crop": crop},
        "operating_point": {"threshold": 0.5, "min_mask_px": 0, "at_size": 1024},
        "tta": ["identity", "hflip"],
    }
    return save_weights(tmp_path / f"{name}.safetensors", model, meta)


def test_predictor_frame_crop_and_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((100, 90)).astype(np.float32), rng.random((64, 64)).astype(np.float32)]
    single = Predictor([_bundle(tmp_path)])
    assert single.tta == ["identity", "hflip"]
    probs = single.predict(images)
    assert [p.shape for p in probs] == [(100, 90), (64, 64)] and all(0 <= p.min() and p.max() <= 1 for p in probs)
    twice = Predictor([_bundle(tmp_path), _bundle(tmp_path, "m2")], weights=[1, 3])
    np.testing.assert_allclose(twice.predict(images)[0], probs[0], atol=1e-6)  # the same model twice: same mean
    other = _bundle(tmp_path, "other", seed=1)
    mixed = Predictor([_bundle(tmp_path), other], weights=[1, 1]).predict(images)[0]
    alone = Predictor([other]).predict(images)[0]
    np.testing.assert_allclose(mixed, (probs[0] + alone) / 2, atol=1e-5)
    crop = {"top": 0.08, "bottom": 0.78, "left": 0.1, "right": 0.85, "pad_px": 0}
    cropped = Predictor([_bundle(tmp_path, "c", crop=crop)]).predict(images)[0]
    assert cropped[:7].max() == 0 and cropped[79:].max() == 0 and cropped[:, 77:].max() == 0 and cropped[10:70, 10:70].min() > 0
    with pytest.raises(PtxsegError, match="input settings"):
        Predictor([_bundle(tmp_path), _bundle(tmp_path, "c2", crop=crop)])
    with pytest.raises(PtxsegError, match="non-negative weights"):
        Predictor([_bundle(tmp_path)], weights=[1, 2])


def test_probability_maps_round_trip(tmp_path):
    prob = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    back8 = load_probability_map(save_probability_map(tmp_path / "a.npz", prob, "uint8"))
    back16 = load_probability_map(save_probability_map(tmp_path / "b.npz", prob, "float16"))
    assert np.abs(back8 - prob).max() <= 0.5 / 255 + 1e-7 and np.abs(back16 - prob).max() < 1e-3
    with pytest.raises(PtxsegError, match="uint8 or float16"):
        save_probability_map(tmp_path / "c.npz", prob, "int4")
