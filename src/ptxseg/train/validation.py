"""The validation pass of a training epoch: per-image Dice at the configured operating point, the BCE, and the
grid statistics from which the epoch's own tuned operating point is found — gathered over ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ptxseg.artifacts.checkpoint import unwrap
from ptxseg.errors import PtxsegError
from ptxseg.measure.gridsearch import map_statistics, search, stats_from_rows
from ptxseg.measure.metrics import dice_per_image
from ptxseg.measure.operating_point import OperatingPoint, apply_operating_point
from ptxseg.train import distributed as D
from ptxseg.train.data import SegmentationDataset
from ptxseg.train.epoch import autocast

#: validation probabilities are reduced (and kept, for the end-of-training record) at most at this side
TUNE_SIZE = 256
#: thresholds of each epoch's operating-point search (× minimum mask sizes 0–5,000 px at 1024²)
END_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.1, 0.91, 0.05), 2))


@dataclass
class Validation:
    """One validation pass: per-image numbers over the fold (in dataset order) and the epoch's tuned point."""

    dice: np.ndarray  # N, at the configured operating point
    loss: np.ndarray  # N, BCE over the known pixels
    positive: np.ndarray  # N bool: the truth is not empty
    tuned_point: OperatingPoint  # threshold × minimum mask that maximises mean Dice on this pass
    tuned_dice: float
    probs: np.ndarray | None = None  # N × s × s float16 (kept on request)
    truths: np.ndarray | None = None
    heads: np.ndarray | None = None  # N classifier-head probabilities, when the model has a head

    def record(self) -> dict[str, Any]:
        """The epoch record's validation fields."""
        d, pos = self.dice, self.positive
        return {
            "val_dice": float(d.mean()),
            "val_loss": float(self.loss.mean()),
            "val_dice_pos": float(d[pos].mean()) if pos.any() else float("nan"),
            "val_empty_correct": float(d[~pos].mean()) if (~pos).any() else float("nan"),
            "val_images": int(len(d)),
            "val_dice_tuned": float(self.tuned_dice),
            "val_tuned_threshold": float(self.tuned_point.threshold),
            "val_tuned_min_mask_px": int(self.tuned_point.min_mask_px),
        }


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    loader: Iterable,
    op: OperatingPoint,
    dist: D.Dist,
    amp: str = "none",
    channels_last: bool = False,
    keep_probs: bool = False,
    diverged: Callable[[str], Exception] | None = None,
) -> Validation:
    """One pass over the validation fold, gathered over ranks: per-image Dice at ``op``, BCE (``val_loss``,
    comparable across recipes whatever their training loss), and the grid statistics from which the epoch's own
    tuned operating point is found (threshold × minimum mask, on maps of at most ``TUNE_SIZE``²); with
    ``keep_probs`` also those maps (float16) and truths for the end-of-training record."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    dices, losses, positives, probs, truths, order, heads, rows = [], [], [], [], [], [], [], []
    for x, y, idx in loader:
        x = x.to(dist.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dist.device, amp):
            logits, cls = net.forward_with_cls(x)
        logits = logits.float().cpu()
        if not bool(torch.isfinite(logits).all()) or (cls is not None and not bool(torch.isfinite(cls).all())):
            at = "the model's validation output"
            raise diverged(at) if diverged else PtxsegError("training", f"{at} is NaN or infinite", code="non_finite")
        c = None if cls is None else torch.sigmoid(cls.float()).reshape(len(x)).cpu().numpy()
        known = (y >= 0).float()  # unknown pixels (-1) count in neither the loss nor the Dice
        bce = F.binary_cross_entropy_with_logits(logits, y.clamp_min(0), reduction="none") * known
        losses.append((bce.sum((1, 2, 3)) / known.sum((1, 2, 3)).clamp_min(1)).numpy())
        p = (torch.sigmoid(logits) * known)[:, 0].numpy()
        t = y.clamp_min(0)[:, 0].numpy()
        dices.append(dice_per_image(apply_operating_point(p, op, c), t))
        heads.append(np.full(len(x), np.nan) if c is None else c)
        positives.append(t.reshape(len(t), -1).any(1))
        order.append(idx.numpy())
        s = min(TUNE_SIZE, p.shape[-1])
        small_p = F.interpolate(torch.from_numpy(p)[:, None], size=(s, s), mode="area")[:, 0].numpy() if s != p.shape[-1] else p
        small_t = F.interpolate(torch.from_numpy(t)[:, None], size=(s, s), mode="nearest")[:, 0].numpy() if s != t.shape[-1] else t
        for k in range(len(x)):
            item = (small_p[k], small_t[k]) if c is None else (small_p[k], small_t[k], c[k])
            rows.append(map_statistics(item, END_THRESHOLDS, (0,), (), op.at_size))
        if keep_probs:
            probs.append(small_p.astype(np.float16))
            truths.append(small_t.astype(bool))
    net.train(was_training)
    local = (
        np.concatenate(order) if order else np.zeros(0, int),
        np.concatenate(dices) if dices else np.zeros(0),
        np.concatenate(losses) if losses else np.zeros(0),
        np.concatenate(positives) if positives else np.zeros(0, bool),
        np.concatenate(probs) if probs else None,
        np.concatenate(truths) if truths else None,
        np.concatenate(heads) if heads else np.zeros(0),
        rows,
    )
    parts = D.gather(local, dist)
    idx = np.concatenate([p[0] for p in parts])
    _, first = np.unique(idx, return_index=True)  # padded duplicates of a sharded set counted once
    dice, loss, pos, head = (np.concatenate([p[k] for p in parts])[first] for k in (1, 2, 3, 6))
    all_rows = [r for p in parts for r in p[7]]
    grid = stats_from_rows([all_rows[i] for i in first], END_THRESHOLDS, (0,), (), op.at_size)
    tuned = search(grid, bottom_thresholds=())
    kept = [np.concatenate([p[k] for p in parts])[first] if keep_probs else None for k in (4, 5)]
    return Validation(dice, loss, pos, tuned.best, tuned.best_dice, *kept, None if np.isnan(head).any() else head)


class Indexed(torch.utils.data.Dataset):
    """Adds the item index to each sample (validation gathers results across ranks by it)."""

    def __init__(self, ds: SegmentationDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = self.ds[i]
        return x, y, i
