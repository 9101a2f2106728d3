"""Every picture ptxseg draws, in one module: clinical overlays, Grad-CAM overlays, report tiles and figures.

Pure functions of arrays and plain numbers (no model, no file format): RGB ``uint8`` images for overlays and
PNG files (written atomically) for matplotlib figures. The commands and the report only decide *what* to
draw; this module decides how it looks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ptxseg.io.atomic import atomic_path

YELLOW, CYAN, WHITE, ORANGE, RED = (255, 215, 0), (0, 200, 255), (255, 255, 255), (255, 140, 0), (255, 60, 60)  # RGB
#: the findings panel's first line when a model was trained on synthetic data (the JSON says which and on what)
SYNTHETIC_LINE = "MODEL TRAINED ON SYNTHETIC DATA - NOT FOR PATIENTS"
TILE_BLUE, TILE_YELLOW, TILE_RED = (66, 133, 244), (255, 214, 0), (230, 40, 40)
TILE_ALPHA = 0.4


# ------------------------------------------------------------------ overlays of one radiograph


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=WHITE, outline: bool = False) -> None:
    thick = max(1, int(round(scale * 1.6)))
    if outline:  # single letters only: Hershey glyph advances grow with thickness, so outlined words drift apart
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def display_size(shape: tuple[int, int], min_side: int = 640, max_side: int = 1024) -> tuple[int, int]:
    """(width, height) of an overlay: the longer side scaled into [min_side, max_side] so text stays readable."""
    h, w = shape
    f = min(max(1.0, min_side / max(h, w)), max_side / max(h, w))
    return max(1, int(round(w * f))), max(1, int(round(h * f)))


def _display_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    shrink = size[0] < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize((np.clip(image, 0, 1) * 255).astype(np.uint8), size, interpolation=interp)


def findings_lines(report: dict[str, Any]) -> list[tuple[str, tuple[int, int, int]]]:
    """The findings panel of a prediction document (``ptxseg predict``'s JSON): text lines and their colours."""
    p = report["pneumothorax"]
    lines = [(SYNTHETIC_LINE, RED)] if report.get("model_warnings") else []
    lines += [(f"Pneumothorax: {'YES' if p['present'] else 'no'}  (p = {p['probability']:.2f})", YELLOW if p["present"] else WHITE)]
    for side in ("right", "left"):
        s = report[side]
        if s["ratio_pct"] is None:
            lines.append((f"{side.capitalize()} lung: n/a", WHITE))
        else:
            lines.append((f"{side.capitalize()} lung: {s['ratio_pct']:.1f}% of field, {s['severity']}", WHITE))
    if not report["lungs"]["found"]:
        lines.append(("(no lung fields: sides not sized)", WHITE))
    qc = report.get("qc") or {}
    if qc.get("warnings"):
        lines.append((f"QC: {', '.join(qc['warnings'])} - check the input", ORANGE))
    if qc.get("triage_eligible") is False:
        lines.append((f"NOT FIT FOR TRIAGE: {', '.join(qc['flags'])}", ORANGE))
    return lines


def clinical_overlay(
    image: np.ndarray, mask: np.ndarray, lungs: tuple[np.ndarray, np.ndarray] | None, report: dict[str, Any]
) -> np.ndarray:
    """RGB uint8 overlay: pneumothorax ``mask`` filled yellow (α 0.4) and outlined, the (right, left) lung fields
    outlined cyan, the patient's R/L marked on their sides of the image, and the findings of ``report`` (QC warnings
    included) printed at the top; 640–1024 px on its longer side."""
    size = display_size(image.shape)
    out = cv2.cvtColor(_display_gray(image, size), cv2.COLOR_GRAY2RGB)

    def small(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.uint8, copy=False)
        return (m if m.shape[::-1] == size else cv2.resize(m, size, interpolation=cv2.INTER_NEAREST_EXACT)).astype(bool)

    ptx = small(mask)
    if ptx.any():  # blend only the masked pixels: a whole-image float copy costs more than the rest of the overlay
        out[ptx] = (0.6 * out[ptx] + 0.4 * np.array(YELLOW, np.float32)).astype(np.uint8)
    line = max(1, int(round(max(size) / 400)))
    for lung in lungs or ():
        contours, _ = cv2.findContours(small(lung).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, CYAN, line)
    contours, _ = cv2.findContours(ptx.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, YELLOW, line + 1)
    scale = max(0.6, max(size) / 1000)
    step = int(40 * scale)
    _text(out, "R", (int(0.03 * size[0]), size[1] - int(0.04 * size[1])), scale * 1.6, outline=True)  # patient's right: image left
    _text(out, "L", (size[0] - int(0.03 * size[0]) - int(24 * scale), size[1] - int(0.04 * size[1])), scale * 1.6, outline=True)
    lines = findings_lines(report)
    x0, y0 = int(0.02 * size[0]), int(0.015 * size[1])
    thick = max(1, int(round(scale * 1.6)))
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for t, _ in lines)
    box = out[y0 : y0 + step * len(lines) + step // 3, x0 : x0 + width + int(20 * scale)]
    box[:] = (box * 0.35).astype(np.uint8)  # a dark panel behind the findings
    for k, (text, color) in enumerate(lines):
        _text(out, text, (x0 + int(8 * scale), y0 + step * (k + 1) - step // 5), scale, color)
    return out


def cam_overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """RGB uint8: a Grad-CAM heat map (JET colours, α 0.45) over the radiograph, 640–1024 px on its longer side."""
    size = display_size(image.shape)
    gray = _display_gray(image, size)
    heat = cv2.applyColorMap(cv2.resize((np.clip(cam, 0, 1) * 255).astype(np.uint8), size), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    return (0.55 * np.repeat(gray[..., None], 3, -1) + 0.45 * heat).astype(np.uint8)


def case_tile(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, label: str = "") -> np.ndarray:
    """A report tile (RGB uint8): prediction yellow, missed truth red (both α-blended), truth outline blue, ``label``."""
    gray = np.clip(image * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    p, t = pred.astype(bool), truth.astype(bool)
    for region, colour in ((p, TILE_YELLOW), (t & ~p, TILE_RED)):
        rgb[region] = (1 - TILE_ALPHA) * rgb[region] + TILE_ALPHA * np.asarray(colour, np.float32)
    out = rgb.astype(np.uint8)
    if t.any():
        contours, _ = cv2.findContours(t.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, TILE_BLUE, max(1, image.shape[0] // 256))
    if label:
        scale = max(0.4, image.shape[0] / 512)
        cv2.putText(out, label, (6, int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (6, int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------ figures (matplotlib → PNG)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    _pyplot().close(fig)
    return Path(path)


def confusion_figure(metrics: dict[str, Any], path: Path) -> Path:
    """The case confusion matrix (TP, FN / FP, TN) of an evaluation, as a PNG."""
    plt = _pyplot()
    m = np.array([[metrics["case_tp"], metrics["case_fn"]], [metrics["case_fp"], metrics["case_tn"]]])
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(m, cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=14, color="black" if v < m.max() / 2 else "white")
    ax.set_xticks([0, 1], ["predicted +", "predicted −"])
    ax.set_yticks([0, 1], ["pneumothorax", "none"])
    ax.set_title("cases")
    fig.tight_layout()
    return _save(fig, path)


def threshold_curves(sweep: list[dict], path: Path) -> Path:
    """Dice, case sensitivity and specificity against the probability threshold (``ptxseg tune``), as a PNG."""
    plt = _pyplot()
    x = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("dice", "SIIM mean Dice"), ("case_sensitivity", "case sensitivity"), ("case_specificity", "case specificity")):
        ax.plot(x, [r[key] for r in sweep], marker="o", ms=3, label=label)
    ax.set_xlabel("probability threshold (no size rule)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def training_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Training/validation loss and validation Dice per epoch, as a PNG; dotted lines mark progressive stages."""
    plt = _pyplot()
    x = list(range(1, len(history) + 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(x, [r["train_loss"] for r in history], label="train loss")
    ax1.plot(x, [r["val_loss"] for r in history], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(x, [r["val_dice"] for r in history], color="C2", label="validation SIIM Dice")
    ax2.plot(x, [r["val_dice_pos"] for r in history], color="C3", ls="--", label="Dice on positives")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    for k, r in enumerate(history[1:], start=2):
        if r["stage"] != history[k - 2]["stage"]:
            for ax in (ax1, ax2):
                ax.axvline(k - 0.5, color="grey", lw=0.8, ls=":")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)
