"""SIIM per-image Dice conventions on hand-computed cases."""

import numpy as np
import pytest

from ptxseg.metrics import dice_per_image, siim_score


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
