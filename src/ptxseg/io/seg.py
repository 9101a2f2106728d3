"""DICOM SEG output (highdicom): the predicted masks at the source image's full resolution, referencing it.

One BINARY Segmentation instance per source radiograph, in a new series of the
source's study: segment 1 "Pneumothorax" (SCT 36118008, category
Morphologically Abnormal Structure), and optionally segments 2 and 3, the
patient's right and left lung fields (SCT 39607008 Lung, category Anatomical
Structure, laterality in the label). The Referenced Series / Source Image
sequences point at the source instance, so a viewer overlays it on the original.
The SEG has no Pixel Measures (see :func:`write_seg`): its single frame is the
source's pixel grid.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from ptxseg import __version__
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path
from ptxseg.io.derived import clean_source, copying_identifiers, derived_uid


def _derived(source, keyword: str, version: str, kind: str) -> str:
    """The derived UID of ``kind`` from the source's ``keyword`` UID, or a random one when the source has none
    (derived from nothing, every such SEG would share one UID)."""
    import highdicom as hd

    uid = str(source.get(keyword) or "")
    return derived_uid(uid, version, kind) if uid else str(hd.UID())


def write_seg(
    path: str | PathLike[str],
    source,
    pneumothorax: np.ndarray,
    lungs: tuple[np.ndarray, np.ndarray] | None = None,
    software_version: str = "",
    series_number: int = 9901,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
) -> Path:
    """Write a DICOM SEG of ``pneumothorax`` (bool Rows×Columns of ``source``) and optionally the (right, left) lungs.

    Args:
        path: output ``.dcm`` (written atomically).
        source: the source image's pydicom Dataset.
        pneumothorax: mask in the source's pixel grid.
        lungs: the patient's right and left lung fields in the same grid, or None.
        software_version: recorded in the SEG (model and weights version).
        series_number: Series Number of the new SEG series.
        sop_instance_uid, series_instance_uid: the SEG's UIDs; by default derived from the source's SOP Instance
            (Study Instance) UID and ``software_version`` (:func:`ptxseg.io.derived.derived_uid`), so the same
            model on the same source writes the same SEG, one series per model version and study.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    shape = (int(source.Rows), int(source.Columns))
    masks = [np.asarray(pneumothorax, dtype=bool)] + ([np.asarray(m, dtype=bool) for m in lungs] if lungs is not None else [])
    for m in masks:
        if m.shape != shape:
            raise PtxsegError(path, f"mask shape {m.shape} is not the source image's {shape}")
    version = software_version or __version__
    algorithm = hd.AlgorithmIdentificationSequence(name="ptxseg", version=version, family=codes.cid7162.ArtificialIntelligence)

    def segment(number: int, label: str, category, kind) -> hd.seg.SegmentDescription:
        return hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )

    descriptions = [segment(1, "Pneumothorax", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Pneumothorax)]
    if lungs is not None:
        descriptions += [
            segment(2, "Right lung", codes.SCT.AnatomicalStructure, codes.SCT.Lung),
            segment(3, "Left lung", codes.SCT.AnatomicalStructure, codes.SCT.Lung),
        ]
    orientation = source.get("PatientOrientation") or ""
    source = clean_source(source)  # a copy: the caller's dataset stays as read
    # highdicom 0.28 copies PixelSpacing into a Pixel Measures item without SliceThickness (a projection has
    # none) and then cannot read that SEG back; the SEG frame is the source's own pixel grid (Spatial
    # Locations Preserved), whose spacing the referenced source states, so Pixel Measures are left out
    if "PixelSpacing" in source:
        del source.PixelSpacing
    pixels = np.stack(masks, -1).astype(np.uint8)[None]  # 1 frame × rows × columns × segments
    with copying_identifiers():  # e.g. re-anonymised UIDs like ID_0011fe81e
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_instance_uid or _derived(source, "StudyInstanceUID", version, "seg-series"),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or _derived(source, "SOPInstanceUID", version, "seg"),
            instance_number=1,
            manufacturer="ptxseg",
            manufacturer_model_name="ptxseg (research use only, not a medical device)",
            software_versions=version,
            device_serial_number="0",
            omit_empty_frames=False,
        )
    # General Image: a projection has no frame of reference, so Patient Orientation is required (Type 2C)
    seg.PatientOrientation = orientation
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path
