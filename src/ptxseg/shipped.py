"""Models that ship inside the package, by name: ``ptxseg predict default …`` as ``timm.create_model`` takes a name.

``default``
    the pneumothorax model trained on real SIIM-ACR films (an INT8 ONNX Runtime bundle, ``docs/real-model.md``);
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
    "default": "pneumothorax: U-Net / EfficientNet-Lite0 (ImageNet), trained on real SIIM-ACR films (research use)",
    "lungs": "lung fields: U-Net / ResNet-18, trained on 1,160 real radiographs",
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
            raise PtxsegError(model, "is a shipped model name, but this installation does not hold it")
        return found
    raise PtxsegError(model, f"no such file or directory (shipped models: {', '.join(SHIPPED)})")
