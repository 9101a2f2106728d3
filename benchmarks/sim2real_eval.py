"""Pneumothorax models on real films: the 8 labelled SIIM images and the 400 unlabelled SIIM DICOMs.

    .venv/bin/python benchmarks/sim2real_eval.py MODEL [MODEL ...] --out /tmp/sim2real_eval [--grid docs/img/…]

For each model: ``ptxseg evaluate`` on ``siim/real_sample`` (8 real SIIM training images, 2 with a
pneumothorax; masks from the real train-rle.csv.gz, converted with ``ptxseg convert --layout folders``), the
probability each image gets and the AUROC of those 8 (2 positives: a coarse check, not a measurement), and
``ptxseg predict`` on the 400 unlabelled stage-2 DICOMs: how many it calls positive, and (``--grid``, first model)
the 12 films it ranks highest, with their overlays, to be looked at.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
from sklearn.metrics import roc_auc_score

from ptxseg.cli import main as cli
from ptxseg.io.rle import read_rle_csv

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_sample_dataset(work: Path) -> Path:
    """The 8 real SIIM images with their masks, as a canonical dataset (``ptxseg convert --layout folders``)."""
    src = work / "real_sample_src"
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "masks").mkdir(exist_ok=True)
    masks = read_rle_csv(DATA / "siim" / "train-rle.csv.gz")
    for path in sorted((DATA / "siim" / "real_sample").iterdir()):
        shutil.copy(path, src / "images" / path.name)
        if path.suffix == ".dcm":
            header = pydicom.dcmread(path, stop_before_pixels=True)
            rows, cols = int(header.Rows), int(header.Columns)
        else:
            rows, cols = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
        mask = cv2.resize(masks[path.stem].astype(np.uint8) * 255, (cols, rows), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(src / "masks" / f"{path.stem}.png"), mask)
    out = work / "real_sample"
    assert cli(["convert", str(src), str(out), "--layout", "folders", "--size", "512", "-q"]) == 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sim2real_eval"))
    ap.add_argument("--grid", type=Path, default=None, help="write the top-12 grid of the first model here")
    ap.add_argument(
        "--trained-on",
        type=Path,
        default=None,
        help="the first model's training dataset: SIIM films among its backgrounds are left out of the grid and counted apart",
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    data = real_sample_dataset(args.out)
    truth = pd.read_csv(data / "manifest.csv", dtype={"id": str}).set_index("id")["positive"]
    for k, model in enumerate(args.models):
        name = f"m{k}"
        scores = args.out / f"{name}_eval.json"
        cli(["evaluate", "--model", str(model), "--data", str(data), "--split", "train", "--json", str(scores)])
        metrics = json.loads(scores.read_text())
        pred = args.out / f"{name}_real_sample"
        cli(["predict", str(model), str(data / "images"), "--out", str(pred), "-q"])
        summary = pd.read_csv(pred / "summary.csv", dtype={"id": str}).set_index("id")
        probs = summary["probability"].reindex(truth.index)
        auroc = roc_auc_score(truth.values, probs.values)
        print(f"{model}: real_sample {json.dumps(metrics.get('metrics', metrics))[:400]}")
        shown = ", ".join(f"{i[-6:]}={p:.3f}{'*' if truth[i] else ''}" for i, p in probs.items())
        print(f"  probabilities (* = pneumothorax): {shown}; AUROC {auroc:.2f}")
        unl = args.out / f"{name}_unlabeled"
        overlay = "--no-overlay" if k else "--overlay"
        cli(["predict", str(model), str(DATA / "siim" / "unlabeled_dicom"), "--out", str(unl), overlay, "-q"])
        s = pd.read_csv(unl / "summary.csv")
        ok = s[s["status"] == "ok"].sort_values("probability", ascending=False)
        called, median = int(ok["present"].sum()), ok["probability"].median()
        print(f"  400 unlabelled SIIM: {called} called positive; probability median {median:.3f}")
        if args.trained_on is not None:
            used = pd.read_csv(args.trained_on / "manifest.csv")["background"].astype(str)
            seen = {name for name in used if name.lower().endswith(".dcm")}
            ok = ok[[not any(b.endswith(f"{i}.dcm") for b in seen) for i in ok["id"].astype(str)]]
            print(
                f"  of them not used as backgrounds: {len(ok)}; {int(ok['present'].sum())} called positive; "
                f"probability median {ok['probability'].median():.3f} (grid from these)"
            )
        if k == 0 and args.grid is not None:
            tiles = []
            for _, row in ok.head(12).iterrows():
                img = cv2.imread(str(unl / f"{row['id']}_overlay.png"))
                img = cv2.resize(img, (300, 300 * img.shape[0] // img.shape[1]))
                cv2.putText(img, f"p={row['probability']:.3f}", (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
                tiles.append(img[:300])
            rows_ = [np.hstack(tiles[i : i + 4]) for i in range(0, 12, 4)]
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.grid), np.vstack(rows_), [cv2.IMWRITE_JPEG_QUALITY, 85])
            print(f"  grid: {args.grid}")


if __name__ == "__main__":
    main()
