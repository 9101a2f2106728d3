"""Kaggle-format submissions: one ``ImageId,EncodedPixels`` row per image, ``-1`` when empty.

Masks are predicted at the dataset's stored size with the model's TTA and
operating point, then mapped back to each source image's own pixel grid
(undoing the padding and scaling recorded in ``manifest.csv``) before RLE
encoding, so the rows refer to the original DICOM's 1024 × 1024 frame as the
challenge expects. ``ImageId`` is the SOPInstanceUID when known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path

import pandas as pd

from ptxseg.data.geometry import Geometry, restore_mask
from ptxseg.data.manifest import read_manifest
from ptxseg.infer.predictor import Predictor, predict_dataset
from ptxseg.io.rle import RleFormat, rle_encode, write_rle_rows


def _geometry(row: pd.Series, stored: tuple[int, int]) -> Geometry:
    if pd.isna(row.get("orig_rows")):
        return Geometry(stored[0], stored[1], 1.0, 1.0, 0, 0)
    return Geometry(
        int(row["orig_rows"]),
        int(row["orig_cols"]),
        float(row["scale_row"]),
        float(row["scale_col"]),
        int(row["pad_top"]),
        int(row["pad_left"]),
    )


def write_submission(
    predictor: Predictor,
    dataset: str | PathLike[str],
    ids: list[str],
    out: str | PathLike[str],
    fmt: RleFormat = "relative",
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> pd.DataFrame:
    """Predict ``ids`` and write the submission CSV atomically; return its rows."""
    manifest = read_manifest(dataset).set_index("id")
    op = predictor.operating_point
    rows = []
    pairs = predict_dataset(predictor, dataset, ids)
    for image_id, (pred, _) in zip(ids, progress(pairs, len(ids)) if progress else pairs, strict=True):
        row = manifest.loc[image_id]
        mask = restore_mask(pred.mask(op), _geometry(row, pred.prob.shape))
        uid = row.get("SOPInstanceUID")
        rows.append((str(uid) if isinstance(uid, str) and uid else image_id, rle_encode(mask, fmt) if mask.any() else "-1"))
    write_rle_rows(Path(out), rows)
    return pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"])
