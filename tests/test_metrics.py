"""SIIM per-image Dice conventions on hand-computed cases."""

import numpy as np
import pytest

from ptxseg.measure.metrics import dice_per_image, siim_score


def test_conventions():
    empty = np.zeros((4, 4), np.uint8)
    a = empty.copy()
    a[0, :2] = 1  # 2 px
    b = empty.copy()
    b[0, 1:4] = 1  # 3 px, overlap 1
    batch_p = np.stack([empty, a, empty, a])
    batch_t = np.stack([empty, empty, a, b])
    np.testing.assert_allclose(dice_per_image(batch_p, batch_t), [1.0, 0.0, 0.0, 2 * 1 / 5])
    assert siim_score(batch_p, batch_t) == pytest.approx((1 + 0 + 0 + 0.4) / 4)
    assert dice_per_image(a, a)[0] == 1.0
    with pytest.raises(ValueError):
        dice_per_image(a, np.zeros((3, 3)))


from ptxseg.measure.metrics import ImageStats, bootstrap_ci, detection_metrics, evaluate, iou_per_image, summarize  # noqa: E402


def _batch():
    empty = np.zeros((4, 4), np.uint8)
    a = empty.copy()
    a[0, :2] = 1  # 2 px
    b = empty.copy()
    b[0, 1:4] = 1  # 3 px; overlap with a: 1 px
    pred = np.stack([empty, a, empty, a, empty])
    truth = np.stack([empty, empty, a, b, empty])
    return pred, truth


def test_iou_pixel_and_case_metrics_by_hand():
    pred, truth = _batch()
    np.testing.assert_allclose(iou_per_image(pred, truth), [1, 0, 0, 1 / 4, 1])
    s = summarize(ImageStats.of(pred, truth, score=[0.1, 0.7, 0.2, 0.9, 0.3]))
    assert s["mean_dice"] == pytest.approx((1 + 0 + 0 + 0.4 + 1) / 5)
    assert s["positives"] == 2 and s["dice_positive"] == pytest.approx(0.2)
    assert s["empty_correct"] == pytest.approx(2 / 3)  # negatives 0, 1, 4: image 1 has a false mask
    # pixels over positive images (2, 3): tp 1, fp 1, fn 2 + 2 = 4, tn 32 - 6
    assert s["pixel_pos_sensitivity"] == pytest.approx(1 / 5) and s["pixel_pos_precision"] == pytest.approx(1 / 2)
    assert s["pixel_pos_specificity"] == pytest.approx(26 / 27) and s["pixel_pos_f1"] == pytest.approx(2 / 7)
    assert s["pixel_all_precision"] == pytest.approx(1 / 4)  # image 1's 2 false pixels join
    # cases: predicted positive 1, 3; truly positive 2, 3 → tp 1, fp 1, fn 1, tn 2
    assert (s["case_tp"], s["case_fp"], s["case_fn"], s["case_tn"]) == (1, 1, 1, 2)
    assert s["case_sensitivity"] == 0.5 and s["case_specificity"] == pytest.approx(2 / 3) and s["case_accuracy"] == 0.6
    assert s["case_f2"] == pytest.approx(5 / (5 + 4 + 1))
    # scores: positives 0.2, 0.9 vs negatives 0.1, 0.7, 0.3 → 4 of 6 pairs ordered
    assert s["auroc"] == pytest.approx(4 / 6)
    d = detection_metrics([1, 1, 0, 0], [1, 0, 1, 0])
    assert d["case_f1"] == pytest.approx(0.5) and d["case_precision"] == 0.5
    assert summarize(ImageStats.of(pred, truth), min_case_px=3)["case_tp"] == 0  # 2-px masks are not detections


def test_agrees_with_monai_dice():
    from monai.metrics import DiceMetric

    rng = np.random.default_rng(0)
    truth = rng.random((6, 32, 32)) > 0.7
    pred = rng.random((6, 32, 32)) > 0.6
    truth[0] = False
    pred[0] = False  # empty/empty: 1 for both with ignore_empty=False
    truth[1] = False  # empty truth, non-empty prediction: 0
    import torch

    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    theirs = metric(torch.from_numpy(pred[:, None]).float(), torch.from_numpy(truth[:, None]).float()).numpy()[:, 0]
    np.testing.assert_allclose(dice_per_image(pred, truth), theirs, atol=1e-6)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    truth = rng.random((60, 16, 16)) > 0.8
    truth[:40] = False
    pred = truth & (rng.random((60, 16, 16)) > 0.3)
    stats = ImageStats.of(pred, truth, score=truth.reshape(60, -1).any(1) * 0.3 + rng.random(60))  # overlapping classes
    a, b = bootstrap_ci(stats, n_boot=200, seed=3), bootstrap_ci(stats, n_boot=200, seed=3)
    assert a == b and a != bootstrap_ci(stats, n_boot=200, seed=4)
    point = summarize(stats)
    for key in ("mean_dice", "dice_positive", "auroc"):
        lo, hi = a[key]
        assert lo <= point[key] <= hi and lo < hi
    assert a["case_sensitivity"] == (1.0, 1.0)  # every positive is detected in every resample
    assert evaluate(stats, n_boot=50)["ci95"]["mean_dice"][0] <= point["mean_dice"]
