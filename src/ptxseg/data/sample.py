"""A small SIIM-shaped source tree for exercising the ingestion path.

:func:`write_kaggle_sample` writes what the challenge distributed — CR DICOM
files named ``<SOPInstanceUID>.dcm`` under ``dicom-images-train/<study>/<series>/``
and a ``train-rle.csv`` in the stage-1 relative format — with simple
radiograph-like images (body, two lung fields, mediastinum, noise) and, on
positive images, a darker band without texture at the lateral edge of a lung.
A few deliberately bad files (truncated DICOM, a CT, a lateral view) show the
converter's QC. The images are schematic: they test formats, not models.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from ptxseg.io.dicom import write_dicom
from ptxseg.io.rle import write_rle_csv

_UID_ROOT = "1.2.276.0.7230010.3.1.4."  # the SIIM-ACR UID prefix


def _sample_image(rng: np.random.Generator, size: int, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    """A schematic frontal radiograph (float [0,1], brighter = denser) and its pneumothorax mask."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = (((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.55) ** 2) < 1
    image = 0.08 + 0.55 * body
    lungs = np.zeros((size, size), bool)
    for cx in (0.32, 0.68):
        cx += rng.normal(0, 0.01)
        lung = (((xx - cx) / rng.uniform(0.12, 0.15)) ** 2 + ((yy - 0.47) / rng.uniform(0.28, 0.32)) ** 2) < 1
        lungs |= lung
    image = np.where(lungs, 0.25, image)
    image += 0.08 * np.exp(-(((xx - 0.5) / 0.07) ** 2 + ((yy - 0.55) / 0.3) ** 2))  # mediastinum
    mask = np.zeros((size, size), np.uint8)
    if positive:
        right = rng.random() < 0.6  # patient's right = image left
        cx, sign = (0.32, -1) if right else (0.68, 1)
        edge = sign * (xx - cx) > rng.uniform(0.04, 0.09)
        mask = (lungs & edge & (yy < rng.uniform(0.45, 0.7))).astype(np.uint8)
        image = np.where(mask > 0, 0.18, image)
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1), mask


def write_kaggle_sample(out: str | PathLike[str], n: int = 40, size: int = 256, seed: int = 0) -> Path:
    """Write a Kaggle-layout tree with ``n`` training images (about 1 in 4 positive) and 3 QC cases.

    Returns the path of the written ``train-rle.csv``.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, np.ndarray]] = []
    n_patients = max(2, n // 2)
    for i in range(n):
        positive = rng.random() < 0.25
        image, mask = _sample_image(rng, size, positive)
        sop = generate_uid(prefix=_UID_ROOT)
        study, series = generate_uid(prefix=_UID_ROOT), generate_uid(prefix=_UID_ROOT)
        folder = out / "dicom-images-train" / study / series
        write_dicom(
            folder / f"{sop}.dcm",
            np.round(image * 255).astype(np.uint8),
            sop_instance_uid=sop,
            study_instance_uid=study,
            series_instance_uid=series,
            patient_id=f"PTX{i % n_patients:04d}",
            view_position="PA" if rng.random() < 0.6 else "AP",
        )
        rows.append((sop, mask))
    blank = np.zeros((size, size), np.uint8)
    # QC cases: a truncated file, a CT, a lateral view (annotated as negative).
    bad = out / "dicom-images-train" / "qc"
    for name, kwargs in (("ct", {"modality": "CT"}), ("lateral", {"view_position": "LL"}), ("truncated", {})):
        sop = generate_uid(prefix=_UID_ROOT)
        path = write_dicom(bad / f"{sop}.dcm", blank, sop_instance_uid=sop, patient_id=f"QC-{name}", **kwargs)
        if name == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        rows.append((sop, blank))
    csv_path = out / "train-rle.csv"
    write_rle_csv(csv_path, rows, fmt="relative")
    return csv_path
