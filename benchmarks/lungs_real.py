"""The real lung-field model, measured: validation (adult and paediatric), the 11 Shenzhen films, sides, failures,
and what it does on the 400 unlabelled real SIIM DICOMs.

- ``--data`` (``ptxseg convert ../shared/data/lungs_real DATA --target lungs --stratify age_group``) and ``--fold``:
  the validation fold's images through the model's own predictor (TTA, operating point), scored on the source
  grid of the stored image with the annotators' unknown pixels left out: mean Dice of both fields and of each
  lung (``split_lungs`` of the prediction vs the stored sides), with percentile-bootstrap 95 % CIs, per stratum.
- The 11 Shenzhen films of ``../shared/data/lungs`` (never trained on): per image and per lung, mean with CI.
- Upper: Dice over the rows of the true fields' upper half (above the heart and diaphragm, where mask conventions agree).
- Sides: a swap is an image whose predicted right lung overlaps the true left lung more than the true right.
- ``--figures DIR``: the worst validation and Shenzhen cases (truth outline blue, prediction yellow, missed red)
  and a grid of overlays on unlabelled SIIM DICOMs with each one's quality-gate verdict; the gate's counts on all
  400 are printed.

    .venv/bin/python benchmarks/lungs_real.py [--model src/ptxseg/weights/lungs] --data DATA [--fold 0] \\
        [--figures docs/images/lungs] [--siim 400]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import cv2
import numpy as np

from ptxseg.artifacts.shipped import shipped_lung_model
from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.render import case_tile
from ptxseg.data.split import fold_split
from ptxseg.data.truth import read_ignore
from ptxseg.infer.predictor import Predictor
from ptxseg.io.images import read_image, read_mask
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.measure.metrics import dice_per_image
from ptxseg.measure.quality import quality_gate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def ci(values: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap 95 % interval."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def score(pred: np.ndarray, right_t: np.ndarray, left_t: np.ndarray, known: np.ndarray | None = None) -> dict:
    """Dice of both fields and of each lung, and whether the sides were swapped."""
    if known is not None:
        pred, right_t, left_t = pred & known, right_t & known, left_t & known
    f = split_lungs(pred)
    both = float(dice_per_image(pred, right_t | left_t)[0])
    swapped = (f.right & left_t).sum() > (f.right & right_t).sum() or (f.left & right_t).sum() > (f.left & left_t).sum()
    truth = right_t | left_t
    return {
        "fp": int((pred & ~truth).sum()),
        "fn": int((truth & ~pred).sum()),
        "tp": int((pred & truth).sum()),
        "both": both,
        "right": float(dice_per_image(f.right, right_t)[0]),
        "left": float(dice_per_image(f.left, left_t)[0]),
        "swapped": bool(swapped),
        # rows of the true fields' upper half: above the heart and the diaphragm domes, where lung-mask
        # conventions (retrocardiac lung, costophrenic recesses) agree
        "upper": _upper_dice(pred, truth),
    }


def _upper_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    rows = np.flatnonzero(truth.any(1))
    if not len(rows):
        return float("nan")
    top, bottom = rows[0], rows[0] + (rows[-1] - rows[0]) // 2
    return float(dice_per_image(pred[top:bottom], truth[top:bottom])[0])


def report(name: str, rows: list[dict]) -> None:
    parts = []
    for key in ("both", "right", "left", "upper"):
        m, lo, hi = ci([r[key] for r in rows])
        parts.append(f"{key} {m:.4f} [{lo:.4f}, {hi:.4f}]")
    swaps = sum(r["swapped"] for r in rows)
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    print(
        f"{name} ({len(rows)} images): Dice {'; '.join(parts)}; sides swapped in {swaps}; pixel precision "
        f"{tp / max(tp + fp, 1):.4f}, recall {tp / max(tp + fn, 1):.4f}; of the disagreeing pixels "
        f"{fp / max(fp + fn, 1):.0%} are predicted lung outside the mask",
        flush=True,
    )


def tile(image, pred, truth, label, side=384):
    t = case_tile(image, pred, truth, label)
    h, w = t.shape[:2]
    f = side / max(h, w)
    t = cv2.resize(t, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[: t.shape[0], : t.shape[1]] = t
    return canvas


def grid(tiles: list[np.ndarray], cols: int, path: Path) -> None:
    rows = [
        np.concatenate(tiles[i : i + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[i : i + cols])), 1)
        for i in range(0, len(tiles), cols)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="lung-field model (default: the shipped one)")
    ap.add_argument("--data", type=Path, help="converted lungs_real dataset (for the validation fold)")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--siim", type=int, default=400, help="unlabelled SIIM DICOMs to run the gate on")
    args = ap.parse_args()
    model = args.model or shipped_lung_model()
    if model is None:
        raise SystemExit("no --model and no shipped lung model")
    predictor = Predictor([model])
    op = predictor.operating_point
    print(f"model {model} ({predictor.version}), TTA {'+'.join(predictor.tta)}")
    worst = []

    if args.data is not None:
        import pandas as pd

        manifest = pd.read_csv(args.data / "manifest.csv", dtype=str).set_index("id")
        by_stratum = collections.defaultdict(list)
        ceiling = []
        size = predictor.card.preprocessing.size
        for image_id in fold_split(args.data, args.fold, create=False).val_ids:
            image = read_image(args.data / "images" / f"{image_id}.png")
            labels = np.rint(read_image(args.data / "lungs" / f"{image_id}.png", radiograph=False) * 255).astype(int)
            ignore = read_ignore(args.data, image_id)
            pred = predictor.predict([image])[0].mask(op)
            r = score(pred, labels == 1, labels == 2, None if ignore is None else ~ignore)
            # the best a network grid of `size` can do: the true fields down-sampled to it and back
            truth = (labels > 0).astype(np.float32)
            small = cv2.resize(truth, (size, size), interpolation=cv2.INTER_AREA)
            back = cv2.resize(small, truth.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5
            ceiling.append(float(dice_per_image(back, truth > 0)[0]))
            stratum = manifest.loc[image_id, "stratum"] if "stratum" in manifest.columns else "all"
            by_stratum[stratum].append(r)
            worst.append((r["both"], f"{stratum} {image_id}", image, pred, labels > 0))
        for stratum, rows in sorted(by_stratum.items()):
            report(f"validation fold {args.fold}, {stratum}", rows)
        report(f"validation fold {args.fold}, all", [r for rows in by_stratum.values() for r in rows])
        print(
            f"resolution ceiling: the true fields through {size}² and back score Dice {np.mean(ceiling):.4f} (min {min(ceiling):.4f})"
        )

    shenzhen = SHARED / "lungs"
    rows = []
    for image_path in sorted((shenzhen / "lungs").glob("*.png")):
        truth = read_mask(shenzhen / "lungmasks" / f"{image_path.stem}_mask.png").astype(bool)
        image = read_image(image_path)
        pred = predictor.predict([image])[0].mask(op)
        gt = split_lungs(truth)
        r = score(pred, gt.right, gt.left)
        rows.append(r)
        print(f"  Shenzhen {image_path.stem}: both {r['both']:.4f}, right {r['right']:.4f}, left {r['left']:.4f}")
        worst.append((r["both"], f"Shenzhen {image_path.stem}", image, pred, truth))
    if rows:
        report("Shenzhen", rows)

    dicoms = sorted((SHARED / "siim" / "unlabeled_dicom").glob("*.dcm"))[: args.siim]
    counts: collections.Counter = collections.Counter()
    shown = []
    for k, path in enumerate(dicoms):
        rad = load_radiograph(path)
        fields = split_lungs(predictor.predict([rad.image])[0].mask(op))
        gate = quality_gate(fields.right, fields.left, rad.warnings)
        counts.update(gate.flags or ["eligible"])
        if args.figures is not None and k < 24:
            verdict = "eligible" if gate.eligible else ",".join(gate.flags)
            shown.append(tile(rad.image, fields.right | fields.left, np.zeros_like(fields.right), f"{path.stem[-6:]} {verdict}"))
    if dicoms:
        print(f"quality gate on {len(dicoms)} unlabelled SIIM DICOMs: {dict(counts)}")

    if args.figures is not None:
        worst.sort(key=lambda w: w[0])
        grid([tile(im, p, t, f"{name} {d:.3f}") for d, name, im, p, t in worst[:8]], 4, args.figures / "lungs_worst_cases.png")
        if shown:
            grid(shown, 6, args.figures / "lungs_siim_unlabelled.png")


if __name__ == "__main__":
    main()
