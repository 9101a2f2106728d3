"""TTA inverts exactly; ensembles average; the predictor maps probabilities back to the input frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptxseg.artifacts.checkpoint import save_weights
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor
from ptxseg.infer.tta import TTA_TRANSFORMS, tta_members, tta_members_with_cls, tta_predict
from ptxseg.io.probability_maps import load_probability_map, save_probability_map
from ptxseg.models import create_model

from .conftest import model_card


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
    with pytest.raises(PtxsegError, match="unknown test-time augmentation 'rot180'"):
        tta_predict(LogitOfInput(), x, ["rot180"])


def _bundle(tmp_path, name="m", crop=None, seed=0):
    torch.manual_seed(seed)
    model = create_model("unet", encoder="resnet18")
    card = model_card(preprocessing={"crop": crop}, tta=["identity", "hflip"])
    return save_weights(tmp_path / f"{name}.safetensors", model, card)


@pytest.mark.slow
def test_predictor_frame_crop_and_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((100, 90)).astype(np.float32), rng.random((64, 64)).astype(np.float32)]
    single = Predictor([_bundle(tmp_path)])
    assert single.tta == ["identity", "hflip"]
    preds = single.predict(images)
    probs = [p.prob for p in preds]
    assert [p.shape for p in probs] == [(100, 90), (64, 64)] and all(0 <= p.min() and p.max() <= 1 for p in probs)
    twice = Predictor([_bundle(tmp_path), _bundle(tmp_path, "m2")], weights=[1, 3])
    np.testing.assert_allclose(twice.predict(images)[0].prob, probs[0], atol=1e-6)  # the same model twice: same mean
    other = _bundle(tmp_path, "other", seed=1)
    mixed = Predictor([_bundle(tmp_path), other], weights=[1, 1]).predict(images)[0]
    alone = Predictor([other]).predict(images)[0]
    np.testing.assert_allclose(mixed.prob, (probs[0] + alone.prob) / 2, atol=1e-5)
    assert mixed.member_scores.shape == (4,) and mixed.cls_prob is None  # 2 models × 2 TTA members, no head
    crop = {"top": 0.08, "bottom": 0.78, "left": 0.1, "right": 0.85, "pad_px": 0}
    cropped = Predictor([_bundle(tmp_path, "c", crop=crop)]).predict(images)[0].prob
    # 100×90 letterboxed into 64²: rows × 0.64, columns × 58/90 then 3 columns of padding; the crop (rows 5–50,
    # columns 6–54 of the stored square) covers source rows 7.8–78 and columns 4.7–79 (± a pixel of interpolation)
    assert cropped[:6].max() == 0 and cropped[80:].max() == 0 and cropped[:, :3].max() == 0 and cropped[:, 81:].max() == 0
    assert cropped[10:76, 7:77].min() > 0
    with pytest.raises(PtxsegError, match="preprocessing .* differs from the ensemble's"):
        Predictor([_bundle(tmp_path), _bundle(tmp_path, "c2", crop=crop)])
    with pytest.raises(PtxsegError, match="non-negative weights"):
        Predictor([_bundle(tmp_path)], weights=[1, 2])


def test_probability_maps_round_trip(tmp_path):
    prob = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    back8, cls8 = load_probability_map(save_probability_map(tmp_path / "a.npz", prob, "uint8"))
    back16, cls16 = load_probability_map(save_probability_map(tmp_path / "b.npz", prob, "float16", cls_prob=0.25))
    assert np.abs(back8 - prob).max() <= 0.5 / 255 + 1e-7 and np.abs(back16 - prob).max() < 1e-3
    assert cls8 is None and cls16 == 0.25
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PtxsegError, match="bad.npz.*unreadable probability map"):
        load_probability_map(tmp_path / "bad.npz")
    with pytest.raises(PtxsegError, match="uint8 or float16"):
        save_probability_map(tmp_path / "c.npz", prob, "int4")


class ConstantHead(torch.nn.Module):
    """Logits = input; classifier logit = the first value for a left-heavy input, the second for a right-heavy one
    (so the identity and hflip members of a left-heavy image get different heads), to check how heads are averaged."""

    def __init__(self, cls_logits):
        super().__init__()
        self.cls_logits = [float(c) for c in cls_logits]

    def forward(self, x):
        return x

    def forward_with_cls(self, x):
        half = x.shape[-1] // 2
        left, right = x[..., :half].sum((1, 2, 3)), x[..., half:].sum((1, 2, 3))
        c = torch.where(left >= right, torch.tensor(self.cls_logits[0]), torch.tensor(self.cls_logits[1]))
        return x, c.reshape(-1, 1)


def test_members_variance_and_classifier_head(tmp_path):
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 4:10, 3:20] = 3.0
    probs, cls = tta_members_with_cls(ConstantHead([0.0, 2.0]), x, ["identity", "hflip"])
    assert probs.shape == (2, 2, 1, 32, 32) and cls.shape == (2, 2)
    np.testing.assert_allclose(cls[:, 0].numpy(), torch.sigmoid(torch.tensor([0.0, 2.0])).numpy())

    predictor = Predictor([_bundle(tmp_path)])
    predictor.models = [ConstantHead([0.0, 2.0]), LogitOfInput()]  # one model with a head, one without
    predictor.weights = np.array([0.5, 0.5])
    batch = np.zeros((1, 32, 32), np.float32)
    batch[0, 4:10, 3:20] = 3.0
    out = predictor.predict_network(batch)
    head = torch.sigmoid(torch.tensor([0.0, 2.0])).numpy()
    # the head's mean comes from the model that has one only; every member's pixels agree, so variance is 0
    assert out.cls_prob.shape == (1,) and out.cls_prob[0] == pytest.approx(head.mean())
    assert out.variance.max() < 1e-6 and out.member_scores.shape == (1, 4)
    np.testing.assert_allclose(out.member_scores[0], [*head, 1 / (1 + np.exp(-3)), 1 / (1 + np.exp(-3))], rtol=1e-6)
    assert float(out.score[0]) == pytest.approx(head.mean())

    predictor.models = [LogitOfInput(), _Negated()]  # members that disagree: p and 1 − p
    out = predictor.predict_network(batch)
    p = 1 / (1 + np.exp(-3.0))
    assert out.prob[0, 5, 5] == pytest.approx(0.5) and out.variance[0, 5, 5] == pytest.approx((p - 0.5) ** 2, rel=1e-5)
    assert out.cls_prob is None and float(out.score[0]) == pytest.approx(0.5)


class _Negated(torch.nn.Module):
    def forward(self, x):
        return -x


def test_monte_carlo_dropout_samples_dropout_only_and_is_seeded(tmp_path):
    torch.manual_seed(0)
    model = create_model("uefficientnet")  # spatial dropout in the decoder: the masks themselves vary
    card = model_card(name="uefficientnet", encoder="efficientnet-b4", tta=["identity", "hflip"])
    bundle = save_weights(tmp_path / "ueff.safetensors", model, card)
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    plain = Predictor([bundle]).predict([image])[0]
    mc = Predictor([bundle], mc_dropout=3)
    first, again = mc.predict([image])[0], mc.predict([image])[0]
    assert mc.uses_mc_dropout and first.member_scores.shape == (6,)  # 2 TTA × 3 passes
    assert first.variance.mean() > plain.variance.mean() + 1e-6  # the passes disagree
    np.testing.assert_array_equal(first.prob, again.prob)  # seeded: the same input, the same samples
    net = mc.models[0]
    assert not net.training and net.net.mc_dropout is False  # BatchNorm never left eval; the flag is reset
    no_dropout = Predictor([_bundle(tmp_path)], mc_dropout=3)
    assert not no_dropout.uses_mc_dropout and no_dropout.predict([image])[0].member_scores.shape == (2,)
    with pytest.raises(PtxsegError, match="mc-dropout"):
        Predictor([bundle], mc_dropout=-1)
