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

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

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
