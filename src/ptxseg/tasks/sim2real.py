"""``ptxseg synth --backgrounds DIR``: a training set of real radiographs with inserted pneumothoraces.

Each output image is one real radiograph of ``DIR`` (PNG, JPEG or DICOM; used in turn), stored as a ``size²``
square (pad, as ``ptxseg convert`` stores), its lung fields found by the real lung-field model (the shipped one
by default), and — for a ``positive_fraction`` of them — a real SIIM mask shape inserted by
:func:`ptxseg.synth.insert.insert_lesion`. The canonical layout is the phantoms': ``images/``, ``masks/``,
``lungs/`` (1 right, 2 left), ``manifest.csv`` with the true per-side ratios, the background's file name (its
``PatientID``, so folds never split one film between training and validation) and the SIIM shape's ImageId.

Backgrounds may hold an unlabelled pneumothorax of their own. Where they come from matters: about one SIIM film
in five has one, while the paediatric (Kermany) and adult COVID-19 films of ``lungs_real`` and ``cxr_unlabeled``
rarely do — those are the default backgrounds of ``docs/sim2real.md``. A film whose lung fields the lung model
cannot find (both fields) is left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path

import numpy as np

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.data.geometry import resize_image
from ptxseg.data.manifest import StoredGeometry, write_dataset_info, write_manifest
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir
from ptxseg.io.images import RADIOGRAPH_SUFFIXES, to_uint16, write_png
from ptxseg.io.rle import read_rle_csv
from ptxseg.measure.lung_sides import split_lungs
from ptxseg.synth.dataset import stored_as_drawn
from ptxseg.synth.insert import InsertParams, insert_lesion
from ptxseg.tasks.lungs import LungSegmenter

_POSITIVE, _SHAPE, _RENDER, _TENSION = 21, 22, 23, 24
#: share of unilateral inserted lesions drawn as tension pneumothorax (mediastinal shift): a setting — SIIM does
#: not mark tension, so its real share in the file cannot be measured here
TENSION_FRACTION = 0.02


def background_files(folder: str | PathLike[str]) -> list[Path]:
    """The radiographs under ``folder`` (recursively, sorted), by suffix."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in RADIOGRAPH_SUFFIXES)
    if not files:
        raise PtxsegError(folder, "--backgrounds: no PNG, JPEG or DICOM radiograph in this folder")
    return files


def insert_dataset(
    backgrounds: str | PathLike[str],
    out: str | PathLike[str],
    n: int,
    masks_from: str | PathLike[str],
    *,
    size: int = 512,
    positive_fraction: float = 0.5,
    seed: int = 0,
    lung_model: str | PathLike[str] | None = None,
    params: InsertParams | None = None,
    tension_fraction: float = TENSION_FRACTION,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """Write ``n`` images (backgrounds in turn) to ``out``; return the manifest rows and what was left out
    (``{"unreadable": k, "no_lungs": k}``). A ``tension_fraction`` of the unilateral lesions also shift the
    mediastinum (:func:`ptxseg.synth.insert.shift_mediastinum`); their lung masks are the shifted ones."""
    if n < 1 or not 0.0 <= positive_fraction <= 1.0 or not 0.0 <= tension_fraction <= 1.0 or size < 64:
        raise PtxsegError(
            "synth",
            "need n >= 1, 0 <= positive and tension fractions <= 1, size >= 64 "
            f"(got {n}, {positive_fraction}, {tension_fraction}, {size})",
        )
    files = background_files(backgrounds)
    masks = read_rle_csv(masks_from)
    positives = masks.positive_ids
    if not positives:
        raise PtxsegError(masks_from, "--masks-from: the RLE CSV has no positive image")
    segmenter = LungSegmenter(lung_model)
    out = prepare_output_dir(Path(out))
    rows: list[dict] = []
    left_out = {"unreadable": 0, "no_lungs": 0}
    indices: Iterable[int] = range(n)
    if progress is not None:
        indices = progress(indices, n)
    for i in indices:
        path = files[i % len(files)]
        try:
            image = resize_image(load_radiograph(path).image, size, "pad")[0]
        except PtxsegError:
            left_out["unreadable"] += 1
            continue
        fields = split_lungs(segmenter.model.predict([image])[0].mask(segmenter.model.operating_point))
        if not (fields.right.any() and fields.left.any()):
            left_out["no_lungs"] += 1
            continue
        lungs = {"right": fields.right.astype(np.uint8), "left": fields.left.astype(np.uint8)}
        positive = bool(np.random.default_rng([seed, _POSITIVE, i]).random() < positive_fraction)
        shape_of, mask, ratio, side = "", np.zeros(image.shape, np.uint8), {"right": 0.0, "left": 0.0}, "none"
        tension = False
        if positive:
            shape_of = positives[int(np.random.default_rng([seed, _SHAPE, i]).integers(len(positives)))]
            tension = bool(np.random.default_rng([seed, _TENSION, i]).random() < tension_fraction)
            ins = insert_lesion(
                image, lungs, masks[shape_of], np.random.default_rng([seed, _RENDER, i]), params or InsertParams(), tension
            )
            image, mask, ratio, side, lungs = ins.image, ins.mask, ins.ratio, ins.side, ins.lungs
            positive, tension = bool(mask.any()), ins.tension
        image_id = f"ins{i:06d}"
        write_png(out / "images" / f"{image_id}.png", to_uint16(image))
        write_png(out / "masks" / f"{image_id}.png", mask * np.uint8(255))
        write_png(out / "lungs" / f"{image_id}.png", lungs["right"] + 2 * lungs["left"])
        rows.append(
            {
                "id": image_id,
                "source": "inserted",
                "domain": "inserted_lesions",
                "split": "train",
                "positive": int(positive),
                "mask_area": int(mask.sum()),
                **stored_as_drawn(size),
                "PatientID": path.stem,
                "Modality": "CR",
                "BodyPartExamined": "CHEST",
                "ptx_side": side if positive else "none",
                "tension": int(tension),
                "ratio_right": round(100 * ratio["right"], 4),
                "ratio_left": round(100 * ratio["left"], 4),
                "lung_area_right": int(lungs["right"].sum()),
                "lung_area_left": int(lungs["left"].sum()),
                "background": path.name,
                "siim_shape_of": shape_of,
            }
        )
    if not rows:
        raise PtxsegError(backgrounds, f"--backgrounds: no usable radiograph ({left_out})")
    write_dataset_info(out, StoredGeometry(size, "pad", True))
    write_manifest(out / "manifest.csv", rows)
    return rows, left_out
