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

import copy
import warnings
from os import PathLike
from pathlib import Path

import numpy as np

from ptxseg import __version__
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path

#: Type 2 attributes of the patient and study modules that highdicom copies from the source (may be empty)
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)


def write_seg(
    path: str | PathLike[str],
    source,
    pneumothorax: np.ndarray,
    lungs: tuple[np.ndarray, np.ndarray] | None = None,
    software_version: str = "",
    series_number: int = 9901,
) -> Path:
    """Write a DICOM SEG of ``pneumothorax`` (bool Rows×Columns of ``source``) and optionally the (right, left) lungs.

    Args:
        path: output ``.dcm`` (written atomically).
        source: the source image's pydicom Dataset.
        pneumothorax: mask in the source's pixel grid.
        lungs: the patient's right and left lung fields in the same grid, or None.
        software_version: recorded in the SEG (model and weights version).
        series_number: Series Number of the new SEG series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    shape = (int(source.Rows), int(source.Columns))
    masks = [np.asarray(pneumothorax, dtype=bool)] + ([np.asarray(m, dtype=bool) for m in lungs] if lungs is not None else [])
    for m in masks:
        if m.shape != shape:
            raise PtxsegError(path, f"mask shape {m.shape} is not the source image's {shape}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="ptxseg", version=software_version or __version__, family=codes.cid7162.ArtificialIntelligence
    )

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
    missing = [k for k in _TYPE2_COPIED if k not in source]
    if "PixelSpacing" in source or missing:
        source = copy.deepcopy(source)  # the caller's dataset stays as read
        # highdicom 0.28 copies PixelSpacing into a Pixel Measures item without SliceThickness (a projection has
        # none) and then cannot read that SEG back; the SEG frame is the source's own pixel grid (Spatial
        # Locations Preserved), whose spacing the referenced source states, so Pixel Measures are left out
        if "PixelSpacing" in source:
            del source.PixelSpacing
        for keyword in missing:  # Type 2 patient/study attributes the SEG copies: present, empty when unknown
            setattr(source, keyword, "")
    pixels = np.stack(masks, -1).astype(np.uint8)[None]  # 1 frame × rows × columns × segments
    with warnings.catch_warnings():
        # the SEG copies the source's identifiers as they are, even where they break a VR rule or look odd
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        warnings.filterwarnings("ignore", message="Invalid value for VR")  # e.g. re-anonymised UIDs like ID_0011fe81e
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="ptxseg",
            manufacturer_model_name="ptxseg (research use only, not a medical device)",
            software_versions=software_version or __version__,
            device_serial_number="0",
            omit_empty_frames=False,
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path
