"""Write the measured numbers of docs/demo.md from a demo run's own record (``OUT/demo.json``).

    .venv/bin/ptxseg demo --out /tmp/demo_full              # the full demo (about 7-10 minutes here)
    .venv/bin/python scripts/demo_numbers.py /tmp/demo_full  # rewrites docs/demo.md between its markers
    .venv/bin/python scripts/demo_numbers.py /tmp/demo_full --check   # exit 1 when the doc differs from the run

Everything between ``<!-- demo-numbers:start -->`` and ``<!-- demo-numbers:end -->`` in docs/demo.md is this
script's output; nothing there is typed by hand. tests/test_cli.py runs it on a ``demo --quick`` record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "demo.md"
START, END = "<!-- demo-numbers:start -->", "<!-- demo-numbers:end -->"


def _ci(test: dict, key: str) -> str:
    lo_hi = (test.get("ci95") or {}).get(key)
    return f"{lo_hi[0]:.3f}–{lo_hi[1]:.3f}" if lo_hi and None not in lo_hi else "n/a"


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _flagged(predictions: list[dict]) -> str:
    flagged = [p for p in predictions if p["present"]]
    ratios = []
    for p in flagged:
        sides = [f"{side} {p[f'ratio_{side}_pct']:.1f} %" for side in ("right", "left") if (p[f"ratio_{side}_pct"] or 0) > 0]
        ratios.append(" and ".join(sides) or "size unknown")
    what = "; ".join(ratios) if ratios else "none"
    head = f"{len(flagged)} of the {len(predictions)} test DICOMs given to `ptxseg predict` were flagged"
    return f"{head} (pneumothorax-to-lung ratios: {what})"


def render(record: dict) -> str:
    """The measured section of docs/demo.md for one demo record."""
    t, train, tuned, lungs = record["test"], record["train"], record["tuned"], record["lungs"]
    op = tuned["operating_point"]
    minutes, seconds = divmod(round(record["seconds"]), 60)
    folds = record["fold_images"]
    train_images = sum(folds)
    negatives = t["images"] - t["positives"]
    selected = "at its tuned point" if train["select_by"] == "tuned" else "at the configured point"
    other = train["best_dice"] if train["select_by"] == "tuned" else None
    lines = [
        f"**{minutes} min {seconds:02d} s** in all (no wall clock decides anything, so the numbers below do not depend",
        f"on the machine's speed or load; the time does). {record['phantoms']} phantoms → {train_images} training images",
        f"({len(folds)} folds of {min(folds)}–{max(folds)} images each) and {t['images']} held-out test phantoms"
        f" ({t['positives']} with",
        f"pneumothorax). {train['epochs_run']} epochs ran ({train['stop_reason']}); the chosen epoch is {train['chosen_epoch']},",
        f"validation Dice {_n(train['select_dice'])} {selected}"
        + (f" ({_n(other)} at the fixed threshold 0.5)." if other is not None else "."),
        f"`ptxseg tune` chose threshold {op['threshold']}, minimum mask {op['min_mask_px']:,} px and minimum component",
        f"{op['min_component_px']:,} px (at {op['at_size']}²), validation Dice {_n(tuned['dice'])}. On the **test split**, with TTA:",
        "",
        "| | value | 95 % CI (bootstrap) |",
        "|---|---|---|",
        f"| SIIM mean Dice | **{_n(t['mean_dice'])}** | {_ci(t, 'mean_dice')} |",
        f"| Dice on the {t['positives']} images with pneumothorax | {_n(t['dice_positive'])} | {_ci(t, 'dice_positive')} |",
        f"| negatives predicted empty | {_n(t['empty_correct'])} | {_ci(t, 'empty_correct')} |",
        f"| case sensitivity / specificity | {_n(t['case_sensitivity'])} / {_n(t['case_specificity'])} | "
        f"{_ci(t, 'case_sensitivity')} / {_ci(t, 'case_specificity')} |",
        f"| AUROC (image score) | {_n(t['auroc'])} | {_ci(t, 'auroc')} |",
        "",
        f"The all-empty baseline on this test split is {negatives / t['images']:.3f} ({negatives} of {t['images']} without",
        f"pneumothorax). The phantom lung-field model reached validation Dice {_n(lungs['select_dice'])} in {lungs['epochs_run']}",
        f"epochs. {_flagged(record['predictions'])}.",
    ]
    real = record.get("real_lungs")
    if real:
        flagged = sorted({q for q in real["qc"] if isinstance(q, str) and q != "ok"})
        lines.append(
            f"Step 10 ran the shipped lung model on {real['films']} real radiographs: {real['eligible']} fit for triage"
            + (f" (QC: {', '.join(flagged)})." if flagged else ".")
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the demo's --out folder (with demo.json)")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 when the doc differs from the run")
    args = parser.parse_args()
    record = json.loads((args.demo / "demo.json").read_text(encoding="utf-8"))
    text = args.doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{args.doc}: no {START} … {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{render(record)}\n{END}{tail}"
    if args.check:
        if new != text:
            print(f"{args.doc} does not match {args.demo / 'demo.json'}: run scripts/demo_numbers.py {args.demo}", file=sys.stderr)
            return 1
        print(f"{args.doc} matches {args.demo / 'demo.json'}")
        return 0
    args.doc.write_text(new, encoding="utf-8")
    print(f"wrote the measured numbers of {args.demo / 'demo.json'} into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
