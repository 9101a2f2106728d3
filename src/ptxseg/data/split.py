"""``ptxseg split``: patient-grouped, label-stratified K-fold assignment.

Only training rows with an image and an annotation (a known pneumothorax label, or a lung-field mask in a
lungs-only dataset, whose label is written as -1 = unknown) take part; rows of the ``test`` split are never
assigned. All images of one patient (``PatientID``; the image id when the patient is unknown) fall in the
same fold, so no patient is seen in training and validation at once, and each fold's share of positive
images — and of each ``stratum`` (e.g. adult / child) when the manifest has that column — is as close to the
whole set's as the grouping allows (scikit-learn's ``StratifiedGroupKFold``). The same seed gives the same folds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from ptxseg.data.manifest import check_ids, read_manifest
from ptxseg.errors import PtxsegError, reading
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.images import read_image
from ptxseg.io.names import under

FOLD_COLUMNS = ("id", "patient", "positive", "fold")


def pos_weight_from_counts(positive_px: int, total_px: int) -> float:
    """``N_neg / N_pos`` from pixel counts (the ``pos_weight: auto`` rule of the BCE losses)."""
    if positive_px <= 0:
        raise PtxsegError("loss.pos_weight", "auto needs at least one positive pixel in the training masks")
    return (total_px - positive_px) / positive_px


UNKNOWN = -1  # folds.csv label of an image without a pneumothorax annotation (lungs-only datasets, unlabelled films)
ALWAYS_TRAIN = -1  # folds.csv fold of an unlabelled film: in the training set of every fold, never validated


def eligible_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """Training rows with a written image and an annotation: a known positive flag or a lung-field mask."""
    annotated = manifest["positive"].notna()
    if "lung_area" in manifest.columns:
        annotated |= manifest["lung_area"].notna()
    ok = (manifest["split"] == "train") & (manifest["has_image"] == 1) & annotated
    return manifest.loc[ok]


def make_folds(manifest: pd.DataFrame, folds: int = 5, seed: int = 42, size_strata: int = 0, unlabelled: bool = False) -> pd.DataFrame:
    """Assign each eligible row a fold in ``0 .. folds-1``.

    ``size_strata`` > 1 also stratifies the positives by mask-area quantile (3: terciles), so every fold keeps
    the share of small, medium and large lesions. ``unlabelled``: training images without any annotation (an
    unknown label) are added with ``positive`` -1 and fold :data:`ALWAYS_TRAIN` (-1): they train in every fold
    (as unlabelled films, never as negatives) and are never validated on.

    Returns:
        A frame with columns ``id, patient, positive, fold`` (and ``stratum`` when the manifest has one) in
        manifest order; ``positive`` is -1 for an image without a pneumothorax annotation.

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
    labels = rows["positive"].fillna(UNKNOWN).astype(int).to_numpy()
    strata = labels.astype(str)
    if size_strata > 1:
        strata = np.char.add(strata, size_bins(rows["mask_area"], labels, size_strata))
    if "stratum" in rows.columns:
        strata = np.char.add(np.char.add(strata, "|"), rows["stratum"].astype("string").fillna("").to_numpy(str))
    # StratifiedGroupKFold warns and degrades when a class has fewer members than folds.
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=rows.index, dtype=int)
    if len(set(strata)) > 1:
        split_iter = splitter.split(rows, strata, groups.to_numpy())
    else:  # one class only: group folds without stratification
        split_iter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, labels, groups.to_numpy())
    for k, (_, val_idx) in enumerate(split_iter):
        fold.iloc[val_idx] = k
    table = pd.DataFrame({"id": rows["id"], "patient": groups, "positive": labels, "fold": fold})
    if "stratum" in rows.columns:
        table["stratum"] = rows["stratum"]
    if unlabelled:
        extra = unlabelled_rows(manifest)
        added = pd.DataFrame({"id": extra["id"], "patient": extra["id"], "positive": UNKNOWN, "fold": ALWAYS_TRAIN})
        table = pd.concat([table, added])
    return table.reset_index(drop=True)


def size_bins(areas: pd.Series, labels: np.ndarray, bins: int) -> np.ndarray:
    """``"|s<k>"`` per row: the positive's mask-area quantile bin (0 smallest), ``""`` for the others."""
    out = np.full(len(labels), "", dtype=object)
    pos = labels == 1
    if pos.sum() >= bins:
        ranks = pd.Series(np.asarray(areas, float)[pos]).rank(method="first").to_numpy()
        out[pos] = [f"|s{int(k)}" for k in np.minimum((ranks - 1) * bins // pos.sum(), bins - 1)]
    return out.astype(str)


def unlabelled_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """Training rows with an image but no annotation at all (no label, no mask, no lung fields)."""
    known = manifest["positive"].notna()
    if "lung_area" in manifest.columns:
        known |= manifest["lung_area"].notna()
    ok = (manifest["split"] == "train") & (manifest["has_image"] == 1) & ~known
    return manifest.loc[ok]


def split_dataset(
    dataset: str | PathLike[str], folds: int = 5, seed: int = 42, size_strata: int = 0, unlabelled: bool = False
) -> pd.DataFrame:
    """Write ``DATASET/folds.csv`` (atomically) and return it (options: :func:`make_folds`)."""
    manifest = read_manifest(dataset)
    table = make_folds(manifest, folds, seed, size_strata, unlabelled)
    write_text_atomic(Path(dataset) / "folds.csv", table.to_csv(index=False))
    return table


def fold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per fold: images, patients, positives and positive share."""
    known = table.assign(pos=(table["positive"] == 1).astype(int), known=table["positive"] != UNKNOWN)
    g = known.groupby("fold")
    out = pd.DataFrame(
        {
            "images": g.size(),
            "patients": g["patient"].nunique(),
            "positive": g["pos"].sum(),
            "positive_share": (g["pos"].sum() / g["known"].sum().where(lambda n: n > 0)).round(3),
        }
    )
    if "stratum" in table.columns:
        counts = pd.crosstab(table["fold"], table["stratum"].fillna(""))
        for name in counts.columns:
            out[f"stratum {name}"] = counts[name]
    return out


@dataclass(frozen=True)
class FoldSplit:
    """The ids (and 0/1 labels) of the training and validation images of one fold."""

    train_ids: list[str]
    train_labels: np.ndarray
    val_ids: list[str]
    val_labels: np.ndarray
    fingerprint: str
    train_mask_px: int = 0  # foreground pixels of the training masks (stored size)
    train_total_px: int = 0  # all pixels of the training images (stored size)
    train_strata: tuple[str, ...] | None = None  # the training images' ``stratum`` (folds.csv), when it has that column

    def auto_pos_weight(self) -> float:
        """``N_neg / N_pos`` pixels over the training masks (``pos_weight: auto``)."""
        return pos_weight_from_counts(self.train_mask_px, self.train_total_px)


def fold_split(dataset: str | PathLike[str], fold: int, folds: int = 5, split_seed: int = 42, create: bool = True) -> FoldSplit:
    """Training/validation ids of ``fold``, creating ``folds.csv`` when missing (and ``create``)."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    path = dataset / "folds.csv"
    if not path.is_file():
        if not create:
            raise PtxsegError(path, "missing (run 'ptxseg split' first)")
        split_dataset(dataset, folds=folds, seed=split_seed)
    with reading(path, "folds file"):
        table = pd.read_csv(path, dtype={"id": str}, encoding="utf-8-sig")
    missing = {"id", "fold", "positive"} - set(table.columns)
    if missing:
        raise PtxsegError(path, f"lacks columns {', '.join(sorted(missing))}")
    check_ids(table["id"], path)
    for col in ("fold", "positive"):
        if not pd.api.types.is_integer_dtype(table[col]):
            raise PtxsegError(path, f"column {col!r} must hold integers")
    test_ids = set(manifest.loc[manifest["split"] == "test", "id"])
    table = table[~table["id"].isin(test_ids)]  # a test image never trains or validates, whatever folds.csv says
    n_folds = int(table["fold"].max()) + 1 if len(table) else 0
    if not 0 <= fold < n_folds:
        raise PtxsegError("--fold", f"must be in 0..{n_folds - 1} for {path}, got {fold}")
    train, val = table[table["fold"] != fold], table[table["fold"] == fold]
    if train.empty or val.empty:
        raise PtxsegError(path, f"fold {fold} leaves an empty training or validation set")
    areas = manifest.set_index("id")["mask_area"].reindex(train["id"]).fillna(0).astype(int)
    digest = hashlib.sha256("\n".join(f"{i},{a}" for i, a in zip(train["id"], areas, strict=True)).encode()).hexdigest()[:16]
    first = read_image(under(dataset / "images", f"{train['id'].iloc[0]}.png"))  # canonical images share one stored size
    return FoldSplit(
        list(train["id"]),
        train["positive"].to_numpy(int),
        list(val["id"]),
        val["positive"].to_numpy(int),
        digest,
        int(areas.sum()),
        first.size * len(train),
        tuple(train["stratum"].astype("string").fillna("").astype(str)) if "stratum" in train.columns else None,
    )
