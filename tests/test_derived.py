"""The DICOM objects ptxseg derives from a source radiograph — SEG, overlay Secondary Capture, TID 1500 SR — on the
real MONOCHROME1 CR and the real SIIM DICOM: deterministic UIDs, references to the source, the numbers read back,
and dciodvfy (dicom3tools) without an error."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from ptxseg.errors import PtxsegError
from ptxseg.io.derived import clean_source, derived_uid
from ptxseg.io.sc import WARNING, burn_in, write_overlay_sc
from ptxseg.io.seg import write_seg
from ptxseg.io.sr import write_report_sr

from .conftest import shared_path
from .dicomcheck import dciodvfy_errors, needs_dciodvfy

REAL = ["dicom/chest_pa_cr_mono1.dcm", "siim/real_sample/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"]


def _masks(shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    right = ((yy - h * 0.5) / (h * 0.3)) ** 2 + ((xx - w * 0.3) / (w * 0.15)) ** 2 < 1  # image left = patient right
    left = ((yy - h * 0.5) / (h * 0.3)) ** 2 + ((xx - w * 0.7) / (w * 0.15)) ** 2 < 1
    ptx = right & (xx < w * 0.22)  # a rim along the right chest wall
    return ptx, right, left


def _doc(ptx, right, left, spacing):
    px = None if spacing is None else spacing[0] * spacing[1]

    def side(mask, lung):
        area, lung_area = int((mask & lung).sum()), int(lung.sum())
        ratio = 100 * area / lung_area
        sev = "none" if area == 0 else ("mild" if ratio < 20 else "moderate" if ratio <= 40 else "severe")

        def mm(v):
            return None if px is None else v * px

        return {
            "area_px": area,
            "area_mm2": mm(area),
            "lung_area_px": lung_area,
            "lung_area_mm2": mm(lung_area),
            "ratio_pct": ratio,
            "severity": sev,
        }

    return {
        "input": {"pixel_spacing_mm": None if spacing is None else list(spacing)},
        "pneumothorax": {"present": bool(ptx.any()), "probability": 0.87},
        "right": side(ptx, right),
        "left": side(ptx, left),
    }


@pytest.fixture(scope="module", params=REAL, ids=["cr_mono1", "siim"])
def source(request):
    return pydicom.dcmread(shared_path(request.param))


def _written(source, tmp_path, version="ptxseg 0.1.0 / weights abc"):
    ptx, right, left = _masks((int(source.Rows), int(source.Columns)))
    spacing = tuple(float(v) for v in source.PixelSpacing) if "PixelSpacing" in source else None
    doc = _doc(ptx, right, left, spacing)
    seg_path = write_seg(tmp_path / "seg.dcm", source, ptx, (right, left), version)
    seg = pydicom.dcmread(seg_path)
    sr_path = write_report_sr(tmp_path / "sr.dcm", source, seg, doc, version, "unet")
    picture = burn_in(np.full((300, 280, 3), 90, np.uint8))
    sc_path = write_overlay_sc(tmp_path / "sc.dcm", source, picture, version)
    return doc, seg_path, sr_path, sc_path


def test_uids_are_determined_by_the_source_and_the_model_version(source, tmp_path):
    _, seg1, sr1, sc1 = _written(source, tmp_path / "a")
    _, seg2, sr2, sc2 = _written(source, tmp_path / "b")
    _, seg3, sr3, sc3 = _written(source, tmp_path / "c", version="ptxseg 0.1.0 / weights def")
    uids = lambda *ps: [(pydicom.dcmread(p).SOPInstanceUID, pydicom.dcmread(p).SeriesInstanceUID) for p in ps]  # noqa: E731
    assert uids(seg1, sr1, sc1) == uids(seg2, sr2, sc2)  # the same model again: the same objects
    assert not set(uids(seg1, sr1, sc1)) & set(uids(seg3, sr3, sc3))  # another model version: new ones
    assert len({u for u, _ in uids(seg1, sr1, sc1)}) == 3 and all(
        u.startswith("2.25.") and len(u) <= 64 for u, _ in uids(seg1, sr1, sc1)
    )
    assert derived_uid("a", "b") != derived_uid("ab", "")  # the parts are separated, not concatenated


def test_the_sr_reports_each_side_and_references_the_seg_and_the_source(source, tmp_path):
    doc, seg_path, sr_path, _ = _written(source, tmp_path)
    sr, seg = hd.sr.srread(sr_path), pydicom.dcmread(seg_path)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    assert evidence == {source.SOPInstanceUID, seg.SOPInstanceUID}
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    unit = "mm2" if doc["input"]["pixel_spacing_mm"] else "{px}"
    for group, side, segment in zip(groups, ("right", "left"), (2, 3), strict=True):
        reference = group.referenced_segmentation_frame
        assert reference.referenced_sop_instance_uid == seg.SOPInstanceUID and reference.referenced_segment_numbers == [segment]
        assert group.finding_sites[0].laterality.meaning == side.capitalize()
        values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        key = "area_mm2" if unit == "mm2" else "area_px"
        assert values["Area"] == (pytest.approx(doc[side][key]), unit)
        assert values["Ratio"] == (pytest.approx(doc[side]["ratio_pct"]), "%")
        assert group.get_qualitative_evaluations()[0].value.meaning.lower() == doc[side]["severity"]
    assert doc["right"]["severity"] != "none" and doc["left"]["severity"] == "none"  # the two sides differ
    image = sr.content.get_image_measurement_groups()[0]
    assert image.get_measurements()[0].value == pytest.approx(0.87)


def test_the_capture_is_marked_not_for_diagnosis(source, tmp_path):
    _, _, _, sc_path = _written(source, tmp_path)
    sc = pydicom.dcmread(sc_path)
    assert sc.BurnedInAnnotation == "YES" and sc.ImageComments == WARNING and sc.Modality == "OT"
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.pixel_array.shape[2] == 3
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    picture = sc.pixel_array
    assert picture.shape[0] > 300 and (picture[2, 2] == [170, 20, 20]).all()  # the red band added above


@needs_dciodvfy
def test_every_derived_object_passes_dciodvfy(source, tmp_path):
    for path in _written(source, tmp_path)[1:]:
        assert dciodvfy_errors(path) == [], path.name


def test_a_copied_value_that_breaks_its_vr_is_dropped_and_the_source_is_untouched():
    source = pydicom.dcmread(shared_path(REAL[1]))
    assert source.PatientAge == "62"  # SIIM writes ages without their unit: invalid AS
    clean = clean_source(source)
    assert "PatientAge" not in clean and source.PatientAge == "62" and clean.PatientID == source.PatientID


def test_a_probability_that_is_not_a_probability_is_refused(tmp_path):
    source = pydicom.dcmread(shared_path(REAL[0]))
    ptx, right, left = _masks((int(source.Rows), int(source.Columns)))
    doc = _doc(ptx, right, left, None)
    seg = pydicom.dcmread(write_seg(tmp_path / "seg.dcm", source, ptx, (right, left), "v"))
    doc["pneumothorax"]["probability"] = float("nan")
    with pytest.raises(PtxsegError, match="not in \\[0, 1\\]"):
        write_report_sr(tmp_path / "sr.dcm", source, seg, doc, "v", "unet")
    assert not (tmp_path / "sr.dcm").exists()


@needs_dciodvfy
def test_without_lung_fields_the_sr_reports_the_image_only(tmp_path):
    source = pydicom.dcmread(shared_path(REAL[0]))
    ptx, right, left = _masks((int(source.Rows), int(source.Columns)))
    doc = _doc(ptx, right, left, None)
    for side in ("right", "left"):  # what the pipeline reports when no lung field was found
        doc[side] = dict.fromkeys(doc[side])
    seg = pydicom.dcmread(write_seg(tmp_path / "seg.dcm", source, ptx, None, "v"))
    sr = hd.sr.srread(write_report_sr(tmp_path / "sr.dcm", source, seg, doc, "v", "unet"))
    assert sr.content.get_planar_roi_measurement_groups() == [] and len(sr.content.get_image_measurement_groups()) == 1
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
