"""Are the phantoms learnable, and not trivially so?

Trains a plain smp U-Net-ResNet34 (random init, 1 input channel) with BCE + Dice
at 256² on phantoms for a fixed number of CPU minutes, then scores held-out
phantoms (other seed, other patients) with the SIIM mean Dice and prints it
beside the all-empty baseline (predict nothing anywhere), whose score is the
share of negative images.

    .venv/bin/python benchmarks/phantom_learnability.py [--minutes 30] [--train 480] [--val 160]

Batches hold ``--positive-share`` positive images (default half), the usual
class-balanced sampling of SIIM solutions; validation keeps the natural 22 %.

The phantoms must give a Dice clearly above the baseline (learnable) and stay
well below 0.99 after a few minutes (not trivial).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch

from ptxseg.data.manifest import read_manifest
from ptxseg.measure.metrics import dice_per_image
from ptxseg.synth.dataset import synth_dataset


def load(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images normalised per image (min-max, then mean 0.5 / sd 0.5) and masks, as N×1×H×W tensors."""
    ids = read_manifest(folder)["id"].tolist()
    images, masks = [], []
    for i in ids:
        im = cv2.imread(str(folder / "images" / f"{i}.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
        im = (im - im.min()) / max(float(im.max() - im.min()), 1.0)
        images.append((im - 0.5) / 0.5)
        masks.append((cv2.imread(str(folder / "masks" / f"{i}.png"), cv2.IMREAD_UNCHANGED) > 0).astype(np.float32))
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks))[:, None]


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(x[i : i + batch])).numpy()[:, 0] for i in range(0, len(x), batch)]
    model.train()
    return np.concatenate(out)


def score(prob: np.ndarray, truth: np.ndarray, min_size: int = 0) -> dict:
    pred = prob > 0.5
    small = pred.reshape(len(pred), -1).sum(1) < max(min_size, 1)
    pred[small] = False
    d = dice_per_image(pred, truth)
    pos = truth.reshape(len(truth), -1).any(1)
    return {
        "siim_dice": float(d.mean()),
        "dice_positive": float(d[pos].mean()),
        "correct_empty": float(d[~pos].mean()),
        "sensitivity": float((~small[pos]).mean()),
        "specificity": float(small[~pos].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU training budget")
    ap.add_argument("--train", type=int, default=480)
    ap.add_argument("--val", type=int, default=160)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--positive-share", type=float, default=0.5, help="share of positive images per batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synth_dataset(Path(tmp) / "train", args.train, size=args.size, seed=100 + args.seed, workers=2)
        synth_dataset(Path(tmp) / "val", args.val, size=args.size, seed=200 + args.seed, workers=2)
        xtr, ytr = load(Path(tmp) / "train")
        xva, yva = load(Path(tmp) / "val")
        took = time.perf_counter() - t0
        print(f"synthesised {args.train} train + {args.val} val phantoms at {args.size}² in {took:.0f} s", flush=True)

    truth = yva.numpy()[:, 0] > 0
    baseline = float(dice_per_image(np.zeros_like(truth), truth).mean())
    n_val_pos = int(truth.reshape(len(truth), -1).any(1).sum())
    print(f"val: {n_val_pos} of {len(truth)} positive; all-empty baseline SIIM Dice {baseline:.4f}")

    model = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1)
    dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    budget = args.minutes * 60
    start = time.perf_counter()
    seen = epoch = 0
    rng = np.random.default_rng(args.seed)
    checkpoints = sorted({budget * f for f in (0.25, 0.5, 0.75)})
    is_pos = ytr.reshape(len(ytr), -1).any(1).numpy()
    pos_idx, neg_idx = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    n_pos = int(round(args.batch * args.positive_share))
    batches_per_epoch = len(xtr) // args.batch
    while time.perf_counter() - start < budget:
        for _ in range(batches_per_epoch):
            # each batch: n_pos positives and the rest negatives, drawn at random
            idx = np.concatenate([rng.choice(pos_idx, n_pos), rng.choice(neg_idx, args.batch - n_pos)])
            x, y = xtr[idx], ytr[idx]
            if rng.random() < 0.5:  # horizontal flip: a pneumothorax on either side
                x, y = x.flip(-1), y.flip(-1)
            logits = model(x)
            loss = bce(logits, y) + dice_loss(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
            elapsed = time.perf_counter() - start
            if checkpoints and elapsed >= checkpoints[0]:
                checkpoints.pop(0)
                s = score(predict(model, xva), truth)
                print(
                    f"  {elapsed / 60:5.1f} min, epoch {epoch}, {seen} images, loss {loss.item():.3f}: "
                    f"val SIIM Dice {s['siim_dice']:.4f}",
                    flush=True,
                )
            if elapsed >= budget:
                break
        epoch += 1
    train_s = time.perf_counter() - start
    prob = predict(model, xva)
    plain = score(prob, truth)
    tuned = max(((m, score(prob, truth, m)) for m in (0, 10, 25, 50, 100)), key=lambda t: t[1]["siim_dice"])
    print(f"lr {args.lr}, batch {args.batch} with {n_pos} positives")
    print(f"trained {train_s / 60:.1f} CPU min ({args.threads} threads): {seen} images, {seen / train_s:.1f} images/s")
    print(f"all-empty baseline   SIIM Dice {baseline:.4f}")
    print(
        f"U-Net-R34, thr 0.5   SIIM Dice {plain['siim_dice']:.4f}  (Dice on positives {plain['dice_positive']:.3f}, "
        f"correct empty {plain['correct_empty']:.3f}, case sens {plain['sensitivity']:.3f} / spec {plain['specificity']:.3f})"
    )
    print(f"  + min mask {tuned[0]} px  SIIM Dice {tuned[1]['siim_dice']:.4f}  (min size picked on these val images: optimistic)")
    print(f"ratio model / baseline: {plain['siim_dice'] / baseline:.3f}")


if __name__ == "__main__":
    main()
