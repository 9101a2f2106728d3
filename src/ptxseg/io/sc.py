"""DICOM Secondary Capture of the overlay, with the findings burnt in, for viewers that cannot show a SEG.

One RGB Secondary Capture per analysed radiograph, in a series of the source's study, at most
:data:`MAX_SIDE` pixels on its long side: the overlay ``ptxseg predict`` draws (outlines, R/L markers, findings),
with a red band "NOT FOR DIAGNOSTIC USE" added above it. Burned In Annotation is YES and the Image Comments repeat
the warning, so a viewer or a router can tell it from the original.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import cv2
import numpy as np
import pydicom

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path
from ptxseg.io.derived import clean_source, copying_identifiers, derived_uids

#: long side of the capture, pixels (the SEG keeps the full resolution)
MAX_SIDE = 1536
WARNING = "NOT FOR DIAGNOSTIC USE - ptxseg research software, not a medical device"
#: Series Description (LO, at most 64 characters) of a capture made with a model trained on synthetic data
SYNTHETIC_SERIES = "ptxseg overlay - SYNTHETIC-TRAINED MODEL, not for patients"


def burn_in(overlay: np.ndarray, lines: list[str] = (), max_side: int = MAX_SIDE) -> np.ndarray:
    """``overlay`` (H×W×3 uint8 RGB) scaled to at most ``max_side`` wide or high, with :data:`WARNING` in a red
    band added above it and ``lines`` (if any) in a black band added below: nothing of the overlay is covered.
    Returns a new uint8 RGB array."""
    if overlay.ndim != 3 or overlay.shape[2] != 3 or overlay.dtype != np.uint8:
        raise ValueError(f"burn_in needs an H×W×3 uint8 image, got {overlay.dtype} {overlay.shape}")
    h, w = overlay.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    img = cv2.resize(overlay, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else overlay
    w = img.shape[1]
    font, size = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, w / 1500)
    thick = max(1, round(size * 2))
    line_h = round(30 * size) + 8

    def band(rows: list[str], fill: tuple[int, int, int]) -> np.ndarray:
        rows = [part for text in rows for part in _wrap(text, w - 16, font, size, thick)]
        out = np.empty((line_h * len(rows) + 8, w, 3), np.uint8)
        out[:] = fill
        for k, text in enumerate(rows):
            cv2.putText(out, text, (8, line_h * (k + 1) - 4), font, size, (255, 255, 255), thick, cv2.LINE_AA)
        return out

    parts = [band([WARNING], (170, 20, 20)), img] + ([band(list(lines), (0, 0, 0))] if lines else [])
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def _wrap(text: str, width: int, font: int, size: float, thick: int) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word stands alone)."""
    lines: list[str] = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(joined, font, size, thick)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines or [""]


def write_overlay_sc(
    path: str | PathLike[str],
    source: pydicom.Dataset,
    picture: np.ndarray,
    software_version: str,
    series_number: int = 9902,
    warnings: list[str] = (),
) -> Path:
    """Write ``picture`` (H×W×3 uint8 RGB, e.g. from :func:`burn_in`) as a Secondary Capture in the source's study.
    ``warnings`` (the models' warnings, e.g. trained on synthetic data) follow :data:`WARNING` in Image Comments.

    Its UIDs derive from the source's and ``software_version`` (:func:`ptxseg.io.derived.derived_uid`): the same
    model on the same source writes the same instance.
    """
    import highdicom as hd

    sop_uid = str(source.get("SOPInstanceUID") or "")
    if not sop_uid:
        raise PtxsegError(path, "the source has no SOP Instance UID to derive a capture from")
    orientation = tuple(source.get("PatientOrientation") or ())
    if len(orientation) != 2:
        # a frontal chest film as displayed: rows towards the patient's left, columns towards the feet
        orientation = ("L", "F")
    series_uid, instance_uid = derived_uids(source, software_version, "sc")
    with copying_identifiers():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=clean_source(source),
            pixel_array=np.ascontiguousarray(picture),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=instance_uid,
            instance_number=1,
            manufacturer="ptxseg",
            patient_orientation=orientation,
        )
    # General Series: Laterality is Type 2C for a paired body part; a chest film shows both lungs: empty
    if "Laterality" not in sc:
        sc.Laterality = ""
    # the capture is derived from the source: name it, so a viewer or a query can go back to the original
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = sop_uid
    sc.SourceImageSequence = [item]
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = " | ".join([WARNING, *warnings])[:10240]  # LT: at most 10,240 characters
    sc.SeriesDescription = SYNTHETIC_SERIES if warnings else "ptxseg overlay - not for diagnostic use"
    sc.DerivationDescription = f"pneumothorax and lung-field overlay by ptxseg {software_version}"[:1024]
    sc.SoftwareVersions = software_version[:64]
    path = Path(path)
    with atomic_path(path) as tmp:
        sc.save_as(tmp)
    return path
