"""``ptxseg split``: patient-grouped, label-stratified K-fold assignment.

Only training rows with an image and a known label take part; rows of the
``test`` split are never assigned. All images of one patient (``PatientID``;
the image id when the patient is unknown) fall in the same fold, so no patient
is seen in training and validation at once, and each fold's share of
positive images is as close to the whole set's as the grouping allows
(scikit-learn's ``StratifiedGroupKFold``). The same seed gives the same folds.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd

from ptxseg.data.manifest import read_manifest
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic

FOLD_COLUMNS = ("id", "patient", "positive", "fold")


def eligible_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """Training rows with a written image and a known positive flag."""
    ok = (manifest["split"] == "train") & (manifest["has_image"] == 1) & manifest["positive"].notna()
    return manifest.loc[ok]


def make_folds(manifest: pd.DataFrame, folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Assign each eligible row a fold in ``0 .. folds-1``.

    Returns:
        A frame with columns ``id, patient, positive, fold`` in manifest order.

    Raises:
        PtxsegError: if ``folds < 2`` or there are fewer patients than folds.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold  # 1.7 s to import: only when splitting

    if folds < 2:
        raise PtxsegError("--folds", f"must be at least 2, got {folds}")
    rows = eligible_rows(manifest)
    patient = rows["PatientID"] if "PatientID" in rows else pd.Series(pd.NA, index=rows.index)
    groups = patient.astype("string").fillna(rows["id"].astype("string"))
    n_groups = groups.nunique()
    if n_groups < folds:
        raise PtxsegError("--folds", f"{folds} folds need at least {folds} patients; the dataset has {n_groups}")
    labels = rows["positive"].astype(int).to_numpy()
    n_pos = int(labels.sum())
    # StratifiedGroupKFold warns and degrades when a class has fewer members than folds.
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=rows.index, dtype=int)
    if 0 < n_pos < len(labels):
        split_iter = splitter.split(rows, labels, groups.to_numpy())
    else:  # one class only: group folds without stratification
        split_iter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, labels, groups.to_numpy())
    for k, (_, val_idx) in enumerate(split_iter):
        fold.iloc[val_idx] = k
    return pd.DataFrame({"id": rows["id"], "patient": groups, "positive": labels, "fold": fold}).reset_index(drop=True)


def split_dataset(dataset: str | PathLike[str], folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Write ``DATASET/folds.csv`` (atomically) and return it."""
    manifest = read_manifest(dataset)
    table = make_folds(manifest, folds, seed)
    write_text_atomic(Path(dataset) / "folds.csv", table.to_csv(index=False))
    return table


def fold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per fold: images, patients, positives and positive share."""
    g = table.groupby("fold")
    return pd.DataFrame(
        {
            "images": g.size(),
            "patients": g["patient"].nunique(),
            "positive": g["positive"].sum(),
            "positive_share": g["positive"].mean().round(3),
        }
    )
