"""Losses against hand-computed values on tiny tensors, against smp where they overlap, and the
combinators (sums, curricula, deep supervision, classification head)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

from ptxseg.errors import PtxsegError
from ptxseg.losses import SegmentationLoss, auto_pos_weight, build_loss, list_losses
from ptxseg.models.output import SegOutput

# two pixels: logit 0 (p = 0.5) on a positive, logit ln 3 (p = 0.75) on a negative
LOGITS = torch.tensor([0.0, math.log(3.0)]).reshape(1, 1, 1, 2)
TARGET = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)


def test_registry():
    assert {"bce", "wbce", "dice", "focal", "tversky", "lovasz", "lovasz_symmetric", "sum", "curriculum"} <= set(list_losses())
    with pytest.raises(PtxsegError, match="unknown loss"):
        build_loss("hinge2000")
    with pytest.raises(PtxsegError, match="bad arguments"):
        build_loss({"name": "focal", "gama": 2})


def test_weighted_bce_by_hand():
    # pixel 1: −log 0.5; pixel 2: −log(1 − 0.75) = log 4; positive pixel weighted ×3
    expected = (3 * math.log(2) + math.log(4)) / 2
    assert build_loss({"name": "wbce", "pos_weight": 3}).forward(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)
    assert build_loss("bce")(LOGITS, TARGET).item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    with pytest.raises(PtxsegError, match="auto"):
        build_loss({"name": "wbce", "pos_weight": "auto"})


def test_auto_pos_weight():
    masks = [np.array([[1, 0], [0, 0]]), np.zeros((2, 2))]
    assert auto_pos_weight(masks) == pytest.approx(7.0)
    with pytest.raises(PtxsegError):
        auto_pos_weight([np.zeros((2, 2))])


def test_soft_dice_by_hand_and_against_smp():
    # Σpt = 0.5, Σp = 1.25, Σt = 1 → 1 − (2·0.5 + 1)/(2.25 + 1)
    loss = build_loss({"name": "dice", "smooth": 1.0})
    assert loss(LOGITS, TARGET).item() == pytest.approx(1 - 2.0 / 3.25, rel=1e-6)
    torch.manual_seed(0)
    logits, target = torch.randn(3, 1, 8, 8), (torch.rand(3, 1, 8, 8) > 0.6).float()
    ours = build_loss({"name": "dice", "smooth": 0.0})(logits, target)
    theirs = smp.losses.DiceLoss(mode="binary", from_logits=True, smooth=0.0)(logits, target)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    per_image = build_loss({"name": "dice", "per_image": True, "smooth": 1.0})
    empty = torch.full((1, 1, 4, 4), -20.0)
    assert per_image(empty, torch.zeros(1, 1, 4, 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_by_hand():
    # α_t(1−p_t)^γ(−log p_t): positive p_t = 0.5 → 0.25·0.25·log 2; negative p_t = 0.25 → 0.75·0.5625·log 4
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.5625 * math.log(4)) / 2
    assert build_loss({"name": "focal", "alpha": 0.25, "gamma": 2})(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_tversky_by_hand():
    # TP = 0.5, FP = 0.75, FN = 0.5; α = 0.3 (FP), β = 0.7 (FN)
    expected = 1 - 0.5 / (0.5 + 0.3 * 0.75 + 0.7 * 0.5)
    assert build_loss({"name": "tversky", "alpha": 0.3, "beta": 0.7})(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_lovasz_and_symmetric():
    perfect = torch.tensor([5.0, -5.0]).reshape(1, 1, 1, 2)
    assert build_loss("lovasz")(perfect, TARGET).item() == pytest.approx(0.0)
    assert build_loss("lovasz_symmetric")(perfect, TARGET).item() == pytest.approx(0.0)
    # one positive pixel, logit 0: hinge error 1 − 0·1 = 1, Jaccard gradient 1 → loss 1
    one = torch.zeros(1, 1, 1, 1)
    assert build_loss("lovasz")(one, torch.ones(1, 1, 1, 1)).item() == pytest.approx(1.0)
    torch.manual_seed(1)
    logits, target = torch.randn(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.5).float()
    lov = smp.losses.LovaszLoss(mode="binary", per_image=True)
    expected = 0.5 * (lov(logits, target) + lov(-logits, 1 - target))
    assert build_loss("lovasz_symmetric")(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_weighted_sum():
    combo = build_loss({"name": "sum", "terms": [[3, "bce"], [1, "dice"], [4, {"name": "focal", "gamma": 2}]]})
    parts = 3 * build_loss("bce")(LOGITS, TARGET) + build_loss("dice")(LOGITS, TARGET)
    parts = parts + 4 * build_loss({"name": "focal", "gamma": 2})(LOGITS, TARGET)
    assert combo(LOGITS, TARGET).item() == pytest.approx(parts.item(), rel=1e-6)


def test_curriculum_switches_and_blends():
    bce, dice = build_loss("bce")(LOGITS, TARGET).item(), build_loss("dice")(LOGITS, TARGET).item()
    cur = build_loss({"name": "curriculum", "stages": [[0, "bce"], [3, "dice"]]})
    cur.set_epoch(2)
    assert cur(LOGITS, TARGET).item() == pytest.approx(bce)
    cur.set_epoch(3)
    assert cur(LOGITS, TARGET).item() == pytest.approx(dice)
    blended = build_loss({"name": "curriculum", "stages": [[0, "bce"], [3, "dice"]], "blend": 3})
    blended.set_epoch(4)  # second blend epoch: dice weight 2/4
    assert blended.weights() == [0.5, 0.5]
    assert blended(LOGITS, TARGET).item() == pytest.approx(0.5 * bce + 0.5 * dice)
    blended.set_epoch(6)
    assert blended.weights() == [0.0, 1.0]
    with pytest.raises(PtxsegError, match="begin at 0"):
        build_loss({"name": "curriculum", "stages": [[2, "bce"]]})


def test_a_curriculum_inside_a_sum_advances():
    bce, dice = build_loss("bce")(LOGITS, TARGET).item(), build_loss("dice")(LOGITS, TARGET).item()
    combo = SegmentationLoss(
        {"name": "sum", "terms": [[0.5, {"name": "curriculum", "stages": [[0, "bce"], [2, "dice"]]}], [1, "dice"]]}
    )
    combo.set_epoch(0)
    assert combo(LOGITS, TARGET).item() == pytest.approx(0.5 * bce + dice)
    combo.set_epoch(2)  # the nested curriculum has switched to Dice
    assert combo(LOGITS, TARGET).item() == pytest.approx(0.5 * dice + dice)


def test_a_loss_name_registered_twice_is_refused():
    from ptxseg.losses import register_loss

    with pytest.raises(ValueError, match="registered twice"):
        register_loss("dice")(torch.nn.L1Loss)
    assert build_loss("dice")(LOGITS, TARGET).item() == pytest.approx(1 - (2 * 0.5 + 1) / (1.25 + 1 + 1))  # still soft Dice


def test_deep_supervision_and_classifier():
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :4, :4] = 1  # image 0 positive, image 1 empty
    final = torch.randn(2, 1, 8, 8)
    aux = [torch.randn(2, 1, 2, 2), torch.randn(2, 1, 4, 4)]
    cls = torch.tensor([[2.0], [-1.0]])
    crit = SegmentationLoss("bce", cls_weight=0.5)
    out = SegOutput(logits=final, aux=aux, aux_weights=[0.2, 0.4], cls=cls)
    bce = build_loss("bce")
    t2 = torch.zeros(2, 1, 2, 2)
    t2[0, :, :1, :1] = 1
    t4 = torch.zeros(2, 1, 4, 4)
    t4[0, :, :2, :2] = 1
    seg = (bce(final, target) + 0.2 * bce(aux[0], t2) + 0.4 * bce(aux[1], t4)) / 1.6
    cls_term = torch.nn.functional.binary_cross_entropy_with_logits(cls, torch.tensor([[1.0], [0.0]]))
    assert crit(out, target).item() == pytest.approx((seg + 0.5 * cls_term).item(), rel=1e-6)
    assert crit(final, target).item() == pytest.approx(bce(final, target).item())
