"""``MODEL_CARD.md`` of a bundle: what the model is, what it was trained and measured on, how to use it, and its
limits — the intended use following the training data (a model trained on synthetic data is for testing only)."""

from __future__ import annotations

from ptxseg.artifacts.bundle import BundleManifest
from ptxseg.artifacts.card import ModelCard, synthetic_warning, training_domains

INTENDED_USE = {
    "pneumothorax": [
        "- Research on pneumothorax triage: flag, outline and size a pneumothorax for a person to check.",
        "- Frontal (PA/AP) adult chest radiographs as decoded by ptxseg; lateral views, other body parts and",
        "  children are outside the training distribution (ptxseg reports such inputs in each prediction's `qc`).",
        "- The classifier gate and thresholds were tuned on one validation fold; other populations need re-tuning.",
    ],
    "lungs": [
        "- Phase I of ptxseg's pneumothorax quantification: the full (pre-collapse) lung fields that a pneumothorax is",
        "  sized against, the patient's sides, and the quality gate that marks films not fit for triage.",
        "- Frontal (PA/AP) chest radiographs; lateral views and other body parts are outside its training data.",
        "- Its outline follows the annotation convention of its training masks (the whole lung including the part",
        "  behind the heart); masks drawn to another convention score lower against it (see docs/lungs.md).",
    ],
}


def model_card_markdown(manifest: BundleManifest, cards: list[ModelCard]) -> str:
    """``MODEL_CARD.md``: what the model is, what it was trained and measured on, how to use it, and its limits."""
    card = cards[0]
    v = card.metrics.get("validation_at_operating_point", {})
    ci = v.get("ci95", {})

    def num(key: str) -> str:
        value = v.get(key)
        if value is None:
            return "n/a"
        interval = ci.get(key)
        return f"{value:.3f}" + (f" (95 % CI {interval[0]:.3f}–{interval[1]:.3f})" if interval and None not in interval else "")

    data = card.training_data
    lines = [
        f"# {card.recipe or card.model.name} — ptxseg model card",
        "",
        "ptxseg is a research tool, **not a medical device**. Do not use its output for a diagnosis.",
        "",
        "## Model",
        f"- Target: **{card.target}** segmentation on chest radiographs; {len(cards)} member(s), "
        f"{card.model.name} / {card.model.encoder or 'own encoder'}{' with a classifier head' if card.model.aux_classifier else ''}.",
        f"- Precision: {manifest.precision} (ONNX Runtime); TTA: {' + '.join(manifest.tta)}.",
        f"- Preprocessing: {card.preprocessing.describe()}.",
        *(
            [f"- Encoder initialisation: ImageNet weights from the {w['source']}, {w['licence']}, sha256 {w['sha256'][:16]}…."]
            if (w := card.model.encoder_weights)
            else []
        ),
        f"- Operating point: {manifest.operating_point.to_dict()}.",
        (
            f"- Lung-field model: {card.lung_model.name} in `{card.lung_model.path}/`"
            f" ({card.lung_model.precision}, {card.lung_model.version})."
        )
        if card.lung_model
        else "- Lung-field model: none bundled (sides, ratios and severity stay null).",
        "",
        "## Data",
        f"- Trained on `{data.dataset if data else 'unknown'}` (fold {data.fold if data else '?'} held out for validation; "
        f"{data.train_images if data else '?'} training / {data.val_images if data else '?'} validation images; "
        f"fingerprint {data.fingerprint if data else '?'}).",
        *(
            [
                f"- Licences of the training images and masks (attribute them in anything derived): {licence} ({n} images)."
                for licence, n in (data.licences or {}).items()
            ]
            if data
            else []
        ),
        f"- Training domain: {_domains_text(training_domains(card))}.",
        "- Models trained here on phantoms or on few real images say nothing about patients.",
        "",
        "## Validation metrics (the training run's validation pass: no TTA; at the operating point; bootstrap 95 % CIs)",
        f"- SIIM mean Dice: {num('mean_dice')}",
        f"- Dice on images with the target: {num('dice_positive')}",
        f"- Case sensitivity: {num('case_sensitivity')}; specificity: {num('case_specificity')}; AUROC: {num('auroc')}",
        f"- Images: {v.get('images', 'n/a')} ({v.get('positives', 'n/a')} with the target).",
    ]
    q = manifest.quantization
    if q and "dice_int8" in q:
        lines += [
            "",
            "## INT8",
            f"- Static QDQ quantisation calibrated on {q['calibration_images']} training-fold images of `{q['dataset']}`"
            f" ({q['method']}).",
            f"- Validation SIIM mean Dice on {q['eval_images']} images: fp32 {q['dice_fp32']:.4f}, INT8 {q['dice_int8']:.4f} "
            f"(change {q['dice_int8'] - q['dice_fp32']:+.4f}; tolerance {q['tolerance']}).",
        ]
    lines += ["", "## Intended use and limits", *intended_use(card), ""]
    lines += [
        "## Files",
        "Every file of this bundle is listed with its SHA-256 in `bundle.json`; ptxseg refuses a bundle that does not match.",
        "",
        f"Software: {', '.join(f'{k} {v2}' for k, v2 in card.software.items() if isinstance(v2, str))}.",
    ]
    return "\n".join(lines) + "\n"


def intended_use(card: ModelCard) -> list[str]:
    """The card's intended use, which follows its training data: a model trained on synthetic data is for
    demonstrating and testing the software only, whatever its target."""
    warning = synthetic_warning(card)
    if warning is None:
        return INTENDED_USE[card.target]
    return [
        "- **Demonstrating and testing the software only.** The " + warning.removeprefix("the ") + ".",
        "- Not for any radiograph of a patient, research included: every per-film output of this model (JSON,",
        "  overlay, summary row, viewer, DICOM SC and SR) carries this warning.",
    ]


def _domains_text(domains: dict[str, int] | None) -> str:
    if not domains:
        return "not recorded"
    return ", ".join(f"{name.replace('_', ' ')} {n} images" for name, n in domains.items())
