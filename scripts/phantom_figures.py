"""Figures of docs/phantoms.md: an example grid and phantom vs real SIIM mask sizes.

    .venv/bin/python scripts/phantom_figures.py [--out docs/img] [--n 600]

The size comparison uses the real ../shared/data/siim/train-rle.csv.gz (all
2,669 positive images) and ``--n`` phantoms at 256² (positives only), scaled
to 1024² pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptxseg.io.rle import read_rle_csv  # noqa: E402
from ptxseg.synth import make_phantom  # noqa: E402
from ptxseg.synth.dataset import is_positive  # noqa: E402

SIIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim" / "train-rle.csv.gz"


def tile(p, label: str) -> np.ndarray:
    img = cv2.cvtColor((p.image * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    over = img.copy()
    for mask, colour in ((p.lung_right, (255, 160, 0)), (p.lung_left, (0, 200, 0)), (p.ptx, (0, 0, 255))):
        cs, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(over, cs, -1, colour, 1)
    pair = np.concatenate([img, over], 1)
    cv2.putText(pair, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
    return pair


def grid(out: Path) -> None:
    tiles = []
    for i, positive in enumerate([True, True, True, False, True, True]):
        p = make_phantom(seed=2026, index=i, size=384, positive=positive)
        extras = ", ".join(k for k in ("skin_fold", "tube", "ecg_leads") if p.info.get(k))
        label = f"{p.info['view']} {p.side} R {p.ratio['right']:.1f}% L {p.ratio['left']:.1f}% {extras}"
        tiles.append(tile(p, label))
    rows = [np.concatenate(tiles[k : k + 2], 1) for k in range(0, 6, 2)]
    cv2.imwrite(str(out / "phantom_grid.png"), np.concatenate(rows, 0))


def sizes(out: Path, n: int) -> None:
    masks = read_rle_csv(SIIM)
    real = np.array([int(masks[i].sum()) for i in masks.positive_ids])
    size = 256
    synth = []
    for i in range(n):
        if is_positive(7, i, 0.22):
            p = make_phantom(seed=7, index=i, size=size, positive=True)
            synth.append(p.ptx.sum() * (1024 / size) ** 2)
    synth = np.array(synth)
    bins = np.linspace(1.5, 5.5, 33)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.hist(np.log10(real), bins=bins, density=True, alpha=0.55, label=f"real SIIM (n={len(real)})")
    ax.hist(np.log10(synth), bins=bins, density=True, alpha=0.55, label=f"phantoms (n={len(synth)})")
    ax.set_xlabel("pneumothorax area, log10 pixels at 1024²")
    ax.set_ylabel("density")
    ax.set_title("Mask sizes: phantoms vs SIIM train-rle.csv")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "phantom_mask_sizes.png")
    for name, a in (("real SIIM", real), ("phantoms", synth)):
        q = np.percentile(a, [5, 25, 50, 75, 95]).astype(int)
        print(f"{name:10s} n={len(a):5d} min {a.min():.0f} p5 {q[0]} p25 {q[1]} median {q[2]} p75 {q[3]} p95 {q[4]} max {a.max():.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--n", type=int, default=600)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid(args.out)
    sizes(args.out, args.n)


if __name__ == "__main__":
    main()
