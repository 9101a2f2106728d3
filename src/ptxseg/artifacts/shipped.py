"""Models that ship inside the package, by name: ``ptxseg predict default …`` as ``timm.create_model`` takes a name.

``default``
    the pneumothorax model trained on real SIIM-ACR films, once one passes its bar (``docs/real-model.md``): until
    then the name answers why none ships (:data:`WITHHELD`);
``lungs``
    the lung-field model trained on 1,160 real radiographs (``docs/lungs.md``).

A name is only taken as a shipped model when no file or folder of that name exists where the command runs,
so a run directory called ``default`` still means that directory.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from ptxseg.errors import PtxsegError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

#: shipped name → what it is
SHIPPED: dict[str, str] = {
    "default": "pneumothorax: trained on real SIIM-ACR films (research use)",
    "lungs": "lung fields: U-Net / ResNet-18, trained on 1,160 real radiographs",
}

#: shipped names this release does not hold, and why (said wherever the name is used)
WITHHELD: dict[str, str] = {
    "default": "no pneumothorax model ships yet: the real-SIIM model (3 folds, U-Net / EfficientNet-Lite0, ImageNet) "
    "did not beat the all-empty answer out of fold (SIIM mean Dice at 22 % prevalence 0.728, 95 % CI 0.634–0.801, "
    "against 0.780; docs/real-model.md)",
}


def shipped_path(name: str) -> Path | None:
    """The folder of shipped model ``name``, or None when this installation does not hold it."""
    folder = WEIGHTS_DIR / name
    return folder if name in SHIPPED and (folder / "bundle.json").is_file() else None


def resolve_model(model: str | PathLike[str]) -> Path:
    """A model argument as a path: an existing path as it is, a shipped name as its folder.

    Raises:
        PtxsegError: a shipped name this installation does not hold, or a path that does not exist.
    """
    p = Path(model)
    if p.exists():
        return p
    if str(model) in SHIPPED:
        found = shipped_path(str(model))
        if found is None:
            why = WITHHELD.get(str(model), "this installation does not hold it")
            raise PtxsegError(model, f"is a shipped model name, but {why}")
        return found
    raise PtxsegError(model, f"no such file or directory (shipped models: {', '.join(SHIPPED)})")


#: the lung-field model shipped inside the package (a bundle; ``docs/lungs.md``), absent in a checkout without it
SHIPPED_LUNG_MODEL = WEIGHTS_DIR / "lungs"
_MODEL_MARKERS = ("best.safetensors", "model.safetensors", "bundle.json")  # a run directory, a weights folder or a bundle


def shipped_lung_model() -> Path | None:
    """The lung-field model that ships with ptxseg, or None when this installation has none."""
    return SHIPPED_LUNG_MODEL if (SHIPPED_LUNG_MODEL / "bundle.json").is_file() else None


def find_lung_model(model: str | PathLike[str]) -> Path | None:
    """The lung-field model used with a pneumothorax model when the user names none: the one a bundle carries
    (put there by ``ptxseg export --lungs``, i.e. chosen by whoever exported it), else the real one that ships
    with ptxseg; None when there is neither. A run directory's ``lungs/`` is never picked up unasked
    (``ptxseg demo`` keeps a phantom-trained one there in older versions): name it with ``--lungs``."""
    p = Path(model)
    folder = p if p.is_dir() else p.parent
    candidate = folder / "lungs"
    if (folder / "bundle.json").is_file() and any((candidate / m).is_file() for m in _MODEL_MARKERS):
        return candidate
    return shipped_lung_model()


def unused_lung_model(model: str | PathLike[str]) -> Path | None:
    """A lung-field model stored beside a run directory (``MODEL/lungs``) that :func:`find_lung_model` passes over."""
    p = Path(model)
    candidate = p / "lungs"
    if p.is_dir() and not (p / "bundle.json").is_file() and any((candidate / m).is_file() for m in _MODEL_MARKERS):
        return candidate
    return None
