"""DICOM Structured Report of the findings: a TID 1500 Measurement Report (highdicom), referencing the SEG.

One Comprehensive 3D SR per analysed radiograph, in a series of the source's study. Its imaging measurements:

- per side with a lung field (TID 1410, Planar ROI, finding site Lung + laterality): the pneumothorax area on that
  side (mm², or pixels ``{px}`` without a pixel spacing), the lung-field area, the pneumothorax-to-lung ratio
  (%, SCT Ratio), and the severity as a qualitative evaluation (SCT Severity: None / Mild / Moderate / Severe);
  the region is the SEG's lung-field segment of that side;
- for the image (TID 1501): the probability of pneumothorax (DCM Probability, unit ``1``) and the finding
  (SCT Pneumothorax present / absent).

The observer is the device: ptxseg, with the model's name and version; its model name says "research use only,
not a medical device" — or, for a model trained on synthetic data, "SYNTHETIC-TRAINED, not for patients", which
the Series Description repeats. The report is marked complete and not final (an algorithm's result no reader verified).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import pydicom
from pydicom.sr.coding import Code

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import atomic_path
from ptxseg.io.derived import clean_source, copying_identifiers, derived_uid, derived_uids

#: SNOMED CT codes of the severity classes (SCT 246112005 Severity)
SEVERITY_CODES = {
    "none": Code("260413007", "SCT", "None"),
    "mild": Code("255604002", "SCT", "Mild"),
    "moderate": Code("6736007", "SCT", "Moderate"),
    "severe": Code("24484000", "SCT", "Severe"),
}
NO_UNITS = Code("1", "UCUM", "no units")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
PRESENT, ABSENT = Code("52101004", "SCT", "Present"), Code("2667000", "SCT", "Absent")
#: a private code: DICOM has no concept for "the segmented lung field's area" that the ratio is taken against
LUNG_FIELD_AREA = Code("ptxseg-lung-area", "99PTXSEG", "Lung field area")
#: SEG segment numbers of the lung fields (``ptxseg.io.seg``)
LUNG_SEGMENTS = {"right": 2, "left": 3}


def _segment_reference(seg: pydicom.Dataset, segment: int):
    """The SR's reference to one segment of ``seg`` (whose frame ``k`` holds segment ``k``: one source frame) and
    to its source image. DICOM has an image reference carry a segment number *or* frame numbers, never both, and
    no frame number for a single-frame source; highdicom 0.28 writes both, which dciodvfy rejects, so the frame
    numbers go: the segment number identifies the SEG's frame, the source has one."""
    import highdicom as hd

    reference = hd.sr.ReferencedSegmentationFrame.from_segmentation(seg, frame_number=segment, segment_number=segment)
    for item in reference:
        for ref in item.ReferencedSOPSequence:
            if "ReferencedFrameNumber" in ref:
                del ref.ReferencedFrameNumber
    return reference


def _context(software_version: str, model_name: str, synthetic: bool):
    """The observer (ptxseg as a device, its use stated in the model name) and the algorithm identification."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    use = "SYNTHETIC-TRAINED, not for patients" if synthetic else "research use only, not a medical device"
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("ptxseg-device", software_version),
            name="ptxseg",
            manufacturer_name="ptxseg",
            model_name=f"{model_name} ({use})"[:64],
        ),
    )
    algorithm = hd.sr.AlgorithmIdentification(name="ptxseg", version=software_version[:64])
    return hd.sr.ObservationContext(observer_device_context=device), algorithm


def _side_group(side: str, block: dict[str, Any], seg: pydicom.Dataset, uid: str, spacing, algorithm):
    """The planar ROI group of one lung: pneumothorax area, lung-field area, their ratio and the severity,
    referencing the lung's SEG segment. Areas in mm² with a pixel spacing, else in pixels."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    area_unit = codes.UCUM.SquareMillimeter if spacing else Code("{px}", "UCUM", "pixels")

    def area(key: str) -> float:
        return float(block[f"{key}_mm2"] if spacing else block[f"{key}_px"])

    laterality = codes.SCT.Right if side == "right" else codes.SCT.Left
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Area, value=area("area"), unit=area_unit, algorithm_id=algorithm),
        hd.sr.Measurement(name=LUNG_FIELD_AREA, value=area("lung_area"), unit=area_unit, algorithm_id=algorithm),
        hd.sr.Measurement(name=codes.SCT.Ratio, value=float(block["ratio_pct"]), unit=codes.UCUM.Percent, algorithm_id=algorithm),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"pneumothorax, {side} lung"),
        referenced_segment=_segment_reference(seg, LUNG_SEGMENTS[side]),
        finding_type=codes.SCT.Pneumothorax,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung, laterality=laterality)],
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes.SCT.Severity, value=SEVERITY_CODES[block["severity"]])],
    )


def _image_group(p: dict[str, Any], uid: str, algorithm):
    """The whole-image group: the pneumothorax probability and present/absent."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier="pneumothorax, image"),
        finding_type=codes.SCT.Pneumothorax,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(p["probability"]), unit=NO_UNITS, algorithm_id=algorithm)
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes.SCT.Pneumothorax, value=PRESENT if p["present"] else ABSENT)],
    )


def write_report_sr(
    path: str | PathLike[str],
    source: pydicom.Dataset,
    seg: pydicom.Dataset,
    report: dict[str, Any],
    software_version: str,
    model_name: str,
    series_number: int = 9903,
) -> Path:
    """Write the TID 1500 SR of one result document.

    Args:
        path: output ``.dcm`` (written atomically).
        source: the analysed radiograph's dataset.
        seg: the SEG written for it (pneumothorax segment 1, right lung 2, left lung 3 when the lungs were found).
        report: the result document of :meth:`ptxseg.clinical.pipeline.ClinicalPipeline.analyse` (``pneumothorax``,
            ``right``, ``left`` blocks).
        software_version: ptxseg and model weights version; with the source's UIDs it determines the SR's UIDs.
        model_name: the pneumothorax model's name, recorded as the observing device's model.
        series_number: Series Number of the SR series.
    """
    import highdicom as hd

    sop_uid = str(source.get("SOPInstanceUID") or "")
    if not sop_uid:
        raise PtxsegError(path, "the source has no SOP Instance UID to report on")
    p = report["pneumothorax"]
    if not 0.0 <= float(p["probability"]) <= 1.0:  # NaN fails too: an error, never a finding
        raise PtxsegError(path, f"probability {p['probability']!r} is not in [0, 1]")
    source = clean_source(source)
    synthetic = bool(report.get("model_warnings"))
    context, algorithm = _context(software_version, model_name, synthetic)
    spacing = report.get("input", {}).get("pixel_spacing_mm")
    groups: list = []
    for side in ("right", "left"):
        block = report[side]
        if block.get("ratio_pct") is None or LUNG_SEGMENTS[side] > len(seg.SegmentSequence):
            continue  # no lung field on this side: nothing to size against
        groups.append(_side_group(side, block, seg, derived_uid(sop_uid, software_version, f"sr-{side}"), spacing, algorithm))
    groups.append(_image_group(p, derived_uid(sop_uid, software_version, "sr-image"), algorithm))
    content = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PLAIN_CHEST_XRAY, imaging_measurements=groups)
    series_uid, instance_uid = derived_uids(source, software_version, "sr")
    with copying_identifiers():
        sr = hd.sr.Comprehensive3DSR(
            evidence=[source, seg],
            content=content[0],
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=instance_uid,
            instance_number=1,
            manufacturer="ptxseg",
            is_complete=True,
            is_final=False,  # an algorithm's preliminary result, not verified by a reader
        )
    # a model trained on synthetic data says so where a PACS list shows it (General Series, LO: 64 characters)
    sr.SeriesDescription = "ptxseg findings - SYNTHETIC-TRAINED MODEL, not for patients" if synthetic else "ptxseg findings"
    path = Path(path)
    with atomic_path(path) as tmp:
        sr.save_as(tmp)
    return path
