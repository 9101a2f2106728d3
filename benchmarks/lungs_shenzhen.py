"""Phase I on real radiographs: a lung-field model trained on phantoms, scored on the 11 Shenzhen images.

Trains ``lungs_unet_r34_256`` (random init) on ``--phantoms`` synthetic
radiographs for ``--minutes`` CPU minutes (or takes ``--model``), then predicts
the real Shenzhen chest radiographs in ``../shared/data/lungs/`` and prints,
per image, the Dice of the lung field (both lungs) and of each lung after
:func:`ptxseg.measure.lung_sides.split_lungs`, with the mean. Phantoms are not patients:
this measures how far phantom training transfers, whatever the answer is.

    .venv/bin/python benchmarks/lungs_shenzhen.py [--minutes 15] [--phantoms 300] [--size 256] [--model RUN_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ptxseg.config import load_config
from ptxseg.infer.predictor import Predictor
from ptxseg.io.images import read_image, read_mask
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.measure.metrics import dice_per_image
from ptxseg.synth.dataset import synth_dataset
from ptxseg.train.engine import train

SHENZHEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lungs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an existing lung-field run directory (skips training)")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--phantoms", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--work", type=Path, default=None, help="where to keep the phantoms and the run (default: a temp dir)")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="ptxseg-lungs-"))
    model = args.model
    if model is None:
        data = work / "phantoms"
        if not (data / "manifest.csv").is_file():
            synth_dataset(data, args.phantoms, size=args.size, seed=0, workers=2)
        sets = [f"data.size={args.size}", f"model.encoder={args.encoder}", "data.workers=1"]
        t0 = time.monotonic()
        result = train(load_config("lungs_unet_r34_256", sets), data, work / "run", minutes=args.minutes)
        print(
            f"trained on {args.phantoms} phantoms at {args.size}² for {(time.monotonic() - t0) / 60:.1f} min: "
            f"{result.epochs_run} epochs, phantom validation Dice {result.best_dice:.4f}"
        )
        model = work / "run"
    predictor = Predictor([model])
    op = predictor.operating_point
    rows = []
    for image_path in sorted((SHENZHEN / "lungs").glob("*.png")):
        truth = read_mask(SHENZHEN / "lungmasks" / f"{image_path.stem}_mask.png")
        image = read_image(image_path)
        if image.shape != truth.shape:
            raise SystemExit(f"{image_path}: image {image.shape} and mask {truth.shape} differ")
        pred = predictor.predict([image])[0].mask(op)
        fields, gt = split_lungs(pred), split_lungs(truth)
        d = [dice_per_image(pred, truth)[0], dice_per_image(fields.right, gt.right)[0], dice_per_image(fields.left, gt.left)[0]]
        rows.append(d)
        print(f"{image_path.stem}: lung field Dice {d[0]:.3f}, right {d[1]:.3f}, left {d[2]:.3f}  {'; '.join(fields.notes)}")
    mean = np.mean(rows, 0)
    print(f"mean over {len(rows)} Shenzhen images: lung field Dice {mean[0]:.3f}, right lung {mean[1]:.3f}, left lung {mean[2]:.3f}")


if __name__ == "__main__":
    main()
