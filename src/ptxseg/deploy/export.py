"""``ptxseg export``: a run directory or an ensemble file → a deployable ONNX Runtime bundle (:mod:`ptxseg.artifacts.bundle`).

Each member is exported to ONNX (segmentation logits, and the classifier head's logit when the model has one)
and verified against PyTorch (≤ 1e-4 relative on sample inputs). With ``int8``, each member is quantised
statically (QDQ, per-channel weights) with calibration images drawn from the training fold of a dataset, through
the model's own preprocessing; the SIIM mean Dice of the fp32 and the INT8 bundle is measured on the validation
fold and written into the manifest and the cards, and an INT8 bundle that loses more than ``tolerance`` is refused
with both numbers. A lung-field model named with ``lungs`` travels as ``lungs/``; without one, the bundle has none
and ``predict``/``serve`` use the real lung-field model that ships with ptxseg (a run directory's own ``lungs/`` is
not taken unasked: ``ptxseg demo``'s is trained on phantoms).

The bundle is built in a temporary folder beside ``out`` and renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ptxseg.artifacts.bundle import FORMAT, MANIFEST, BundleManifest, BundleMember, is_bundle, read_bundle, write_manifest
from ptxseg.artifacts.card import LungModelRef, ModelCard, training_domains, write_card
from ptxseg.artifacts.card_markdown import model_card_markdown
from ptxseg.data.manifest import dataset_licences
from ptxseg.data.split import fold_split
from ptxseg.errors import PtxsegError, reading
from ptxseg.infer.predictor import Predictor
from ptxseg.io.atomic import prepare_output_dir
from ptxseg.io.images import read_image
from ptxseg.io.names import check_name, under
from ptxseg.models.export import export_onnx, has_head
from ptxseg.tasks.evaluate import evaluate_model

#: INT8 may lose at most this much validation SIIM mean Dice against fp32
DEFAULT_TOLERANCE = 0.005


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote and measured."""

    out: Path
    members: int
    precision: str
    verification: float  # largest ONNX-vs-PyTorch relative difference
    quantization: dict[str, Any] | None = None
    lungs: ExportResult | None = None
    notes: list[str] = field(default_factory=list)


def _calibration_inputs(card: ModelCard, dataset: Path, ids: list[str], n: int, seed: int = 0) -> list[np.ndarray]:
    """Network inputs (``1×1×S×S``) of ``n`` images of ``ids`` drawn with ``seed``, through the card's preprocessing."""

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
    out = []
    for k in sorted(chosen):
        image = read_image(under(dataset / "images", f"{check_name(ids[k], dataset)}.png"))
        x, _ = card.preprocessing.network_input(image)
        out.append(x[None, None].astype(np.float32))
    return out


def quantize_int8(fp32: Path, out: Path, inputs: list[np.ndarray], method: str = "minmax") -> None:
    """Static QDQ quantisation of an ONNX model (uint8 activations, per-channel int8 weights) calibrated on ``inputs``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": x} for x in inputs])

        def get_next(self):
            return next(self.items, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise PtxsegError("--calib-method", f"must be one of {', '.join(methods)}, got {method!r}")
    pre = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.pre.onnx")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=methods[method],
            # No CalibMaxIntermediateOutputs: in this onnxruntime it drops every chunk but the last instead of
            # merging them. The histogram methods (percentile, entropy) hold every activation of every calibration
            # image (64 images at 512² exceeded 22 GB here): docs/deploy.md advises fewer --calib-images with them.
        )
    finally:
        pre.unlink(missing_ok=True)
        for extra in out.parent.glob("augmented_model*.onnx"):
            extra.unlink(missing_ok=True)


def _load_source(source: Path):
    """The PyTorch predictor of a run directory, weights file or ensemble file (models, cards, weights, TTA, point)."""

    predictor = Predictor([source])
    if predictor.bundle is not None:
        raise PtxsegError(source, "is a bundle already; export its run directory or ensemble file")
    return predictor


def _dice(bundle: Path, dataset: Path, ids: list[str], progress=None) -> float:

    return float(evaluate_model(Predictor([bundle]), dataset, ids, n_boot=0, progress=progress).metrics["mean_dice"])


def _folds(card: ModelCard, dataset: Path, fold: int | None):

    if fold is None:
        fold = card.training_data.fold if card.training_data is not None and card.training_data.fold is not None else 0
    return fold, fold_split(dataset, fold, create=False)


def _write_members(predictor, folder: Path, atol: float) -> tuple[list[BundleMember], list[ModelCard], float]:

    members, cards, worst = [], [], 0.0
    for k, (model, card, weight) in enumerate(zip(predictor.models, predictor.cards, predictor.weights, strict=True)):
        onnx, card_name = f"member-{k}.onnx", f"member-{k}.json"
        worst = max(worst, export_onnx(model, folder / onnx, size=card.preprocessing.size, atol=atol))
        write_card(folder / card_name, card)
        outputs = ["logits", "cls"] if has_head(model) else ["logits"]
        members.append(BundleMember(onnx=onnx, card=card_name, weight=float(weight), outputs=outputs))
        cards.append(card)
    return members, cards, worst


def _with_licences(folder: Path, members: list[BundleMember], cards: list[ModelCard]) -> list[ModelCard]:
    """Cards whose training data name their licences and domains: a card trained before cards carried them takes
    them from its dataset's manifest, when that dataset is still there (a bundle travels without it)."""

    out = []
    for member, card in zip(members, cards, strict=True):
        data = card.training_data
        if data is not None and data.dataset:
            found = {
                "licences": dataset_licences(data.dataset) if data.licences is None else None,
                "domains": training_domains(card) if data.domains is None else None,
            }
            update = {k: v for k, v in found.items() if v}
            if update:
                card = card.model_copy(update={"training_data": data.model_copy(update=update)})
                write_card(folder / member.card, card)
        out.append(card)
    return out


def _finish(folder: Path, manifest: BundleManifest, cards: list[ModelCard], card_notes: str | None = None) -> None:
    text = model_card_markdown(manifest, cards) + (f"\n{card_notes.strip()}\n" if card_notes else "")
    (folder / "MODEL_CARD.md").write_text(text, encoding="utf-8")
    write_manifest(folder, manifest)


def _check_options(out: Path, int8: bool, calib, tolerance: float, calib_images: int, eval_images: int | None) -> None:
    if int8 and calib is None:
        raise PtxsegError("--int8", "needs --calib DATASET: calibration images and a validation fold to measure the Dice change")
    if not 0 <= tolerance <= 1:
        raise PtxsegError("--int8-tolerance", f"must be in [0, 1], got {tolerance}")
    if calib_images < 1 or (eval_images is not None and eval_images < 1):
        raise PtxsegError("--calib-images/--eval-images", "must be at least 1")
    if out.exists() and not (out.is_dir() and (is_bundle(out) or not any(out.iterdir()))):
        raise PtxsegError(out, "exists and is not a bundle: choose a new --out (an existing bundle is replaced)")


def export_bundle(
    source: str | PathLike[str],
    out: str | PathLike[str],
    *,
    int8: bool = False,
    calib: str | PathLike[str] | None = None,
    fold: int | None = None,
    lungs: str | PathLike[str] | bool | None = None,
    calib_images: int = 64,
    eval_images: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    method: str = "minmax",
    atol: float = 1e-4,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    card_notes: str | PathLike[str] | None = None,
) -> ExportResult:
    """Export ``source`` (run directory, weights file or ensemble file) as a bundle at ``out`` (see the module docstring).

    Args:
        int8: quantise (needs ``calib``, a canonical dataset with ``folds.csv``).
        fold: the validation fold of ``calib`` (default: the one the model was validated on).
        lungs: the lung-field model to include (default or False: none; predict and serve then use the shipped one).
        calib_images: calibration images, drawn from the training folds.
        eval_images: validation images the fp32/INT8 Dice is measured on (default: the whole fold).
        tolerance: the largest Dice INT8 may lose; a worse INT8 bundle is refused.
        card_notes: a Markdown file appended to ``MODEL_CARD.md`` (e.g. out-of-fold results, the data's terms).

    Raises:
        PtxsegError: a bad source or option, an export that does not match PyTorch, or an INT8 bundle that loses
            more than ``tolerance`` (nothing is written to ``out`` then).
    """

    source, out = Path(source), Path(out)
    _check_options(out, int8, calib, tolerance, calib_images, eval_images)
    notes_text = None
    if card_notes is not None:
        with reading(card_notes, "model card notes"):
            notes_text = Path(card_notes).read_text(encoding="utf-8")
    predictor = _load_source(source)
    parent = prepare_output_dir(out.parent, "output folder", clean=False)  # not ours to sweep: only --out is
    work = parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    work.mkdir()
    try:
        members, cards, err = _write_members(predictor, work, atol)
        cards = _with_licences(work, members, cards)
        manifest = BundleManifest(
            format=FORMAT,
            members=members,
            tta=predictor.tta,
            operating_point=predictor.operating_point,
            verification={"max_rel_diff_vs_pytorch": err, "tolerance": atol},
            source=str(source.resolve()),
            software=cards[0].software,
        )
        notes: list[str] = []
        quantization = None
        if int8:
            manifest, cards, quantization = _quantize(
                work, manifest, cards, Path(calib), fold, calib_images, eval_images, tolerance, method, progress
            )
        _finish(work, manifest, cards, notes_text)
        lung_result = None
        lung_source = _lung_source(source, lungs)
        if lung_source is not None:
            # the same options, INT8 only when the calibration dataset has lung masks to measure it on
            lung_int8 = int8 and calib is not None and (Path(calib) / "lungs").is_dir()
            same = {"calib": calib, "fold": fold, "calib_images": calib_images, "eval_images": eval_images}
            same |= {"tolerance": tolerance, "method": method, "atol": atol, "progress": progress}
            lung_result = export_bundle(lung_source, work / "lungs", int8=lung_int8, lungs=False, **same)
            if int8 and lung_result.precision != "int8":
                notes.append("lung model kept in fp32: the calibration dataset has no lungs/ masks to measure it on")
            cards = _link_lungs(work, manifest, cards)
            _finish(work, manifest, cards, notes_text)  # again: the cards name the lung model, the hashes now cover lungs/
        read_bundle(work)  # the bundle as a user will load it: every hash checked
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        if lung_result is not None:
            lung_result.out = out / "lungs"
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(out, len(members), manifest.precision, err, quantization, lung_result, notes)


def _link_lungs(work: Path, manifest: BundleManifest, cards: list[ModelCard]) -> list[ModelCard]:
    """Record the bundled lung-field model in each member's card."""

    lungs = Predictor([work / "lungs"])
    ref = LungModelRef(path="lungs", name=lungs.card.model.name, version=lungs.version, precision=lungs.bundle.precision)
    cards = [c.model_copy(update={"lung_model": ref}) for c in cards]
    for member, card in zip(manifest.members, cards, strict=True):
        write_card(work / member.card, card)
    return cards


def _lung_source(source: Path, lungs: str | PathLike[str] | bool | None) -> Path | None:
    """The lung-field model to bundle: only one the user named (see the module docstring)."""
    if lungs is None or isinstance(lungs, bool):
        return None
    return Path(lungs)


def _quantize(
    work: Path, manifest: BundleManifest, cards: list[ModelCard], dataset: Path, fold, n_calib, n_eval, tolerance, method, progress
):
    """Measure the fp32 bundle, quantise each member, measure again; the INT8 manifest and cards, or a refusal."""
    fold, split = _folds(cards[0], dataset, fold)
    eval_ids = split.val_ids if n_eval is None else split.val_ids[:n_eval]
    _finish(work, manifest, cards)
    dice_fp32 = _dice(work, dataset, eval_ids, progress)
    int8_members = []
    for member, card in zip(manifest.members, cards, strict=True):
        name = member.onnx.replace(".onnx", ".int8.onnx")
        quantize_int8(work / member.onnx, work / name, _calibration_inputs(card, dataset, split.train_ids, n_calib), method)
        (work / member.onnx).unlink()
        int8_members.append(member.model_copy(update={"onnx": name}))
    quantization = {
        "dataset": str(dataset.resolve()),
        "fold": fold,
        "calibration_images": min(n_calib, len(split.train_ids)),
        "eval_images": len(eval_ids),
        "method": method,
        "dice_fp32": dice_fp32,
        "tolerance": tolerance,
    }
    manifest = manifest.model_copy(update={"members": int8_members, "precision": "int8", "quantization": quantization})
    _finish(work, manifest, cards)
    dice_int8 = _dice(work, dataset, eval_ids, progress)
    quantization["dice_int8"] = dice_int8
    if dice_int8 < dice_fp32 - tolerance:
        raise PtxsegError(
            "--int8",
            f"refused: INT8 validation SIIM mean Dice {dice_int8:.4f} is {dice_fp32 - dice_int8:.4f} below fp32 {dice_fp32:.4f} "
            f"on {len(eval_ids)} images (tolerance {tolerance}); keep fp32, try --calib-method percentile or more --calib-images",
            code="int8_loss",
        )
    cards = [c.model_copy(update={"metrics": c.metrics | {"int8": dict(quantization)}}) for c in cards]
    for member, card in zip(manifest.members, cards, strict=True):
        write_card(work / member.card, card)
    manifest = manifest.model_copy(update={"quantization": quantization})
    return manifest, cards, quantization


__all__ = ["DEFAULT_TOLERANCE", "ExportResult", "MANIFEST", "export_bundle", "model_card_markdown", "quantize_int8"]
