"""Segmentation metrics with the SIIM-ACR challenge conventions (pure numpy).

Per-image Dice: ``2|P∩T| / (|P| + |T|)``, with **both masks empty → 1** and
exactly one empty → 0. The challenge score is the mean per-image Dice over
all images, so correctly empty negatives (78 % of SIIM) weigh as much as
well-segmented positives.
"""

from __future__ import annotations

import numpy as np


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each image of a batch.

    Args:
        pred, truth: ``N×H×W`` (or one ``H×W``) masks; non-zero is foreground.

    Returns:
        float64 array of ``N`` values in ``[0, 1]`` (empty/empty = 1).
    """
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    if p.ndim == 2:
        p, t = p[None], t[None]
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    inter = np.count_nonzero(p & t, axis=1)
    total = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


def siim_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """The SIIM-ACR challenge score: mean per-image Dice over the batch."""
    return float(dice_per_image(pred, truth).mean())
