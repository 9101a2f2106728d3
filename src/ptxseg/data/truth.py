"""The truth of a canonical dataset's image: its stored mask of a target and its "unknown" pixels."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from ptxseg.data.manifest import IGNORE_DIR, MASK_DIRS
from ptxseg.io.images import read_mask
from ptxseg.io.names import check_name, under


def read_truth(dataset: str | PathLike[str], image_id: str, target: str, shape: tuple[int, int]) -> np.ndarray:
    """The stored 0/1 mask of ``target`` (``pneumothorax``: ``masks/``, ``lungs``: ``lungs/``) for an image of a
    canonical dataset; all zeros of ``shape`` when the image has none."""

    path = under(Path(dataset) / MASK_DIRS[target], f"{check_name(image_id, dataset)}.png")
    return read_mask(path) if path.is_file() else np.zeros(shape, np.uint8)


def read_ignore(dataset: str | PathLike[str], image_id: str) -> np.ndarray | None:
    """The dataset's "unknown" pixels of an image (bool, stored size; ``ignore/<id>.png``), or None when it has none."""

    path = under(Path(dataset) / IGNORE_DIR, f"{check_name(image_id, dataset)}.png")
    return read_mask(path).astype(bool) if path.is_file() else None
