"""Stored probability maps (``.npz``): what ``ptxseg evaluate --save-probs`` writes and ``ptxseg tune`` reads."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import atomic_path
from ptxseg.limits import max_pixels


def save_probability_map(path: str | PathLike[str], prob: np.ndarray, dtype: str = "uint8", cls_prob: float | None = None) -> Path:
    """Store a probability map compressed (``.npz``): uint8 (1/255 steps) or float16, with the classifier head's
    image probability when there is one."""

    if dtype == "uint8":
        data = np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)
    elif dtype == "float16":
        data = prob.astype(np.float16)
    else:
        raise PtxsegError("--dtype", f"must be uint8 or float16, got {dtype!r}")
    extra = {} if cls_prob is None else {"cls_prob": np.float32(cls_prob)}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, prob=data, **extra)
    return path


def load_probability_map(path: str | PathLike[str]) -> tuple[np.ndarray, float | None]:
    """A stored probability map as float32 in ``[0, 1]``, and the stored classifier probability (None if absent).

    The file is untrusted: its uncompressed size is checked before decompressing (no zip bomb), no pickle
    is loaded, and a map or probability that is not finite and within ``[0, 1]`` is refused.
    """

    with reading(path, "probability map"):
        with np.load(path, allow_pickle=False) as z:
            if "prob" not in z.files:
                raise PtxsegError(path, "not a ptxseg probability map (no 'prob' array)", code="corrupt")
            size = z.zip.getinfo("prob.npy").file_size
            if size > 4 * max_pixels() + 4096:
                raise PtxsegError(path, f"probability map of {size:,} bytes is larger than the pixel limit allows", code="too_large")
            data = z["prob"]
            cls = float(z["cls_prob"]) if "cls_prob" in z.files else None
    if data.ndim != 2 or data.dtype not in (np.uint8, np.float16, np.float32):
        raise PtxsegError(
            path, f"probability map must be a 2-D uint8/float16/float32 array, got {data.dtype} {data.shape}", code="corrupt"
        )
    prob = data.astype(np.float32) / 255.0 if data.dtype == np.uint8 else data.astype(np.float32)
    if not np.isfinite(prob).all() or prob.min(initial=0) < 0 or prob.max(initial=0) > 1 or (cls is not None and not 0 <= cls <= 1):
        raise PtxsegError(path, "probability map holds values that are not finite probabilities in [0, 1]", code="non_finite")
    return prob, cls
