"""Self-contained HTML reports of an evaluation (``ptxseg report``).

The report shows the metric table with bootstrap intervals, the operating
point and its tuning tables, threshold and training curves when the model has
them, a confusion matrix, and the best, median and worst cases as overlays:
ground truth outlined in blue, the prediction filled yellow, missed
pneumothorax pixels filled red (α = 0.4), the image's Dice on each tile.
Images are PNG files beside ``report.html``, referenced relatively, so the
folder can be zipped and mailed.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ptxseg.artifacts.checkpoint import read_model_card, resolve_weights
from ptxseg.artifacts.ensemble import FORMAT as ENSEMBLE_FORMAT
from ptxseg.artifacts.ensemble import read_ensemble
from ptxseg.clinical.render import case_tile, confusion_figure
from ptxseg.data.manifest import read_manifest
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor, predict_dataset
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.images import read_image, write_png
from ptxseg.io.jsonfile import dumps, read_json
from ptxseg.io.names import check_name, is_safe_name, under
from ptxseg.tasks.evaluate import ROWS, dataset_ids, evaluate_model


def pick_cases(ids: list[str], dice: np.ndarray, positive: np.ndarray, k: int = 3) -> dict[str, list[str]]:
    """Best, median and worst ``k`` images by Dice among images with pneumothorax (all images if none)."""
    idx = np.flatnonzero(positive) if positive.any() else np.arange(len(ids))
    order = idx[np.argsort(dice[idx], kind="stable")]
    mid = len(order) // 2
    pick = {"worst": order[:k], "median": order[max(0, mid - k // 2) : max(0, mid - k // 2) + k], "best": order[::-1][:k]}
    return {name: [ids[i] for i in sel] for name, sel in pick.items()}


def _table(rows: list[tuple[str, str, str]], head: tuple[str, ...]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def write_report(evaluation: dict[str, Any], out: str | PathLike[str], tiles: dict[str, list[tuple[str, np.ndarray]]]) -> Path:
    """Write ``out/report.html`` and its PNGs from an evaluation document and rendered tiles."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ptxseg report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222} table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} td:first-child,th:first-child{text-align:left}",
        ".tiles img{width:240px;margin:4px} .note{background:#fff7d6;padding:8px;border-left:4px solid #e0b000}</style></head><body>",
        "<h1>ptxseg evaluation report</h1>",
        f"<p>Model: <code>{html.escape(str(evaluation.get('model', '')))}</code><br>"
        f"Data: <code>{html.escape(str(evaluation.get('truth', '')))}</code>"
        f" — {evaluation['images']} images, {evaluation['positives']} with pneumothorax.</p>",
    ]
    if evaluation.get("note"):
        parts.append(f"<p class='note'>{html.escape(evaluation['note'])}</p>")
    ci = evaluation.get("ci95", {})
    rows = []
    for key, label in ROWS:
        v = evaluation.get(key)
        if isinstance(v, int | float) and v == v:
            lo_hi = ci.get(key)
            rows.append((label, f"{v:.4f}", f"{lo_hi[0]:.4f}–{lo_hi[1]:.4f}" if lo_hi and None not in lo_hi else ""))
    parts += ["<h2>Metrics</h2>", _table(rows, ("metric", "value", "95% CI (bootstrap)"))]
    op = evaluation.get("operating_point")
    if op:
        parts += ["<h2>Operating point</h2>", _table([(k, str(v), "") for k, v in op.items()], ("setting", "value", ""))]
    tuning = evaluation.get("tuning")
    if tuning:

        def num(v, spec: str) -> str:  # stored JSON holds null where a rate is undefined (no positives or negatives)
            return "n/a" if v is None or v != v else format(v, spec)

        def scored(rows, label) -> list[tuple[str, str, str]]:
            return [
                (label(r), num(r["dice"], ".4f"), f"{num(r['case_sensitivity'], '.3f')} / {num(r['case_specificity'], '.3f')}")
                for r in rows
            ]

        columns = ("Dice", "case sens. / spec.")
        sweep = scored(tuning["threshold_sweep"], lambda r: f"{r['threshold']:.2f}")
        parts += ["<h3>Threshold sweep (validation)</h3>", _table(sweep, ("threshold", *columns))]
        trip = scored(
            tuning.get("triplets_top5", []), lambda r: f"T {r['top_threshold']} A {r['top_min_px']} B {r['bottom_threshold']}"
        )
        if trip:
            parts += ["<h3>Best triplets (validation)</h3>", _table(trip, ("triplet", *columns))]
        gates = scored(
            tuning.get("classifier_gates", []),
            lambda r: f"c {r['cls_threshold']:.1f} · thr {r['threshold']:.2f} · comp {r['component_px']} · mask {r['min_mask_px']}",
        )
        if gates:
            parts += ["<h3>Classifier-head gate (validation)</h3>", _table(gates, ("gate and best point", *columns))]
    confusion_figure(evaluation, out / "confusion.png")
    parts += ["<h2>Cases</h2><img src='confusion.png'>"]
    for name in ("threshold_curves.png", "curves.png"):
        src = evaluation.get("_figures", {}).get(name)
        if src and Path(src).is_file():
            shutil.copyfile(src, out / name)
            parts.append(f"<h2>{'Threshold curves' if 'threshold' in name else 'Training curves'}</h2><img src='{name}'>")
    parts.append(
        "<h2>Best, median and worst images with pneumothorax</h2>"
        "<p>Ground truth outlined blue, prediction yellow, missed pixels red; Dice on each tile.</p>"
    )
    for group, items in tiles.items():
        parts.append(f"<h3>{group}</h3><div class='tiles'>")
        for k, (image_id, rgb) in enumerate(items):
            name = f"case_{group}_{k}.png"
            write_png(out / name, rgb)
            parts.append(f"<img src='{name}' title='{html.escape(image_id)}'>")
        parts.append("</div>")
    parts.append("</body></html>")
    page = out / "report.html"
    write_text_atomic(page, "\n".join(parts))
    write_text_atomic(out / "evaluation.json", dumps({k: v for k, v in evaluation.items() if not k.startswith("_")}, indent=2))
    return page


def render_cases(predictor, dataset: str | PathLike[str], cases: dict[str, list[str]], dice: dict[str, float]) -> dict:
    """Overlay tiles of the picked cases (re-predicted: maps are not kept during evaluation)."""

    op = predictor.operating_point
    tiles: dict[str, list[tuple[str, np.ndarray]]] = {}
    for group, ids in cases.items():
        tiles[group] = []
        for image_id, (pred, truth) in zip(ids, predict_dataset(predictor, dataset, ids), strict=True):
            image = read_image(under(Path(dataset) / "images", f"{check_name(image_id, dataset)}.png"))
            tiles[group].append((image_id, case_tile(image, pred.mask(op), truth, f"Dice {dice[image_id]:.2f}")))
    return tiles


def report_model(
    model: list[str | PathLike[str]],
    dataset: str | PathLike[str],
    ids: list[str],
    out: str | PathLike[str],
    evaluation: dict[str, Any] | None = None,
    note: str = "",
    n_boot: int = 1000,
    progress=None,
    weights: list[float] | None = None,
    tta: list[str] | None = None,
) -> Path:
    """Evaluate (unless ``evaluation`` is given) and write the HTML report of ``model`` (one model, several, or an
    ensemble file) on ``ids``."""

    predictor = Predictor(model, weights=weights, tta=tta)
    if evaluation is None:
        ev = evaluate_model(predictor, dataset, ids, n_boot=n_boot, progress=progress)
        evaluation = {**ev.metrics, "per_image_dice": dict(zip(ev.ids, map(float, ev.dice), strict=True))}
    per_image = evaluation["per_image_dice"]
    manifest = read_manifest(dataset).set_index("id")
    positive = np.array([int(manifest.loc[i, "positive"] or 0) == 1 for i in per_image])
    cases = pick_cases(list(per_image), np.array(list(per_image.values())), positive)
    first = predictor.weight_files[0].parent  # the run directory, or the bundle folder
    tuning = predictor.tuning
    # the curves path is read from a model/ensemble file: only a PNG name beside that file is copied into the report
    base = Path(model[0]).parent if predictor.ensemble is not None else first
    name = Path(str(tuning["curves"])).name if tuning and tuning.get("curves") else "threshold_curves.png"
    threshold_png = under(base, name) if is_safe_name(name) and name.endswith(".png") else first / "threshold_curves.png"
    figures = {"threshold_curves.png": threshold_png}
    if len(predictor.sources) == 1:
        figures["curves.png"] = first / "curves.png"  # training curves: one model only
    evaluation = {
        **evaluation,
        "model": ", ".join(map(str, model)),
        "truth": str(dataset),
        "note": note or evaluation.get("note", ""),
        "tuning": tuning,
        "_figures": figures,
    }
    return write_report(evaluation, out, render_cases(predictor, dataset, cases, per_image))


@dataclass
class ReportRequest:
    """What ``ptxseg report SOURCE`` reports on, resolved from SOURCE (a run directory or bundle, an ensemble file,
    or an evaluation JSON) and the options."""

    models: list[Path]
    data: Path
    ids: list[str]
    out: Path
    evaluation: dict | None = None  # an evaluation JSON's numbers, reused instead of predicting again
    weights: list[float] | None = None
    tta: list[str] | None = None


def resolve_report_source(
    source: Path,
    data: Path | None = None,
    fold: int | None = None,
    split: str | None = None,
    out: Path | None = None,
    tta: list[str] | None = None,
) -> ReportRequest:
    """Detect what SOURCE is and decide the models, dataset, image ids and output folder of its report.

    Raises:
        PtxsegError: a JSON that is neither an ensemble nor an evaluation of a model; TTA that contradicts an
            evaluation's; a model that does not record its dataset when no ``data`` is given; an ensemble without an
            explicit fold or split.
    """
    doc = None
    if source.is_file() and source.suffix == ".json":
        doc = read_json(source)
        if not isinstance(doc, dict):
            raise PtxsegError(source, "not an evaluation JSON or ensemble file")
    if doc is not None and doc.get("format") != ENSEMBLE_FORMAT:
        if "model_paths" not in doc or "data" not in doc:
            raise PtxsegError(source, "not an evaluation of a model (write one with 'ptxseg evaluate --model ... --data ... --json')")
        if tta and tta != doc.get("tta"):
            raise PtxsegError("--tta", "an evaluation JSON was made with its own TTA; re-run 'ptxseg evaluate --tta ...' instead")
        return ReportRequest(
            [Path(p) for p in doc["model_paths"]],
            Path(doc["data"]),
            list(doc["per_image_dice"]),
            out or source.parent / "report",
            doc,
            doc.get("model_weights"),
            doc.get("tta"),
        )
    card = read_model_card(resolve_weights(read_ensemble(source).members[0] if doc is not None else source))
    trained = card.training_data
    if data is None and (trained is None or trained.dataset is None):
        raise PtxsegError("--data", "the model does not record its dataset; pass --data")
    data = data or Path(trained.dataset)
    if split is None and fold is None:
        if doc is not None:  # members of an ensemble may have trained on each other's validation folds
            raise PtxsegError("--fold/--split", "an ensemble is reported on an explicit --split (e.g. test) or --fold")
        fold = trained.fold if trained is not None and trained.fold is not None else 0
    ids = dataset_ids(data, fold, split)
    return ReportRequest([source], data, ids, out or (source if source.is_dir() else source.parent) / "report", tta=tta)
