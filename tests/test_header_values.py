"""Header values a source radiograph copies into its SEG, overlay SC and SR, fuzzed (hypothesis): whatever a
sending device wrote into a copied attribute, the three derived objects are written and pass dciodvfy; a value
that breaks its VR (or an enumerated value highdicom enforces) is left out — emptied when Type 2 — and named in
the result's QC, never quoted; the pneumothorax answer does not change."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.io.derived import TYPE2_COPIED, UNCHECKED_VRS, clean_source, copied_keywords, header_problems
from ptxseg.io.dicom import write_dicom
from ptxseg.io.sc import burn_in, write_overlay_sc
from ptxseg.io.seg import write_seg
from ptxseg.io.sr import write_report_sr

from .dicomcheck import DCIODVFY, dciodvfy_errors
from .test_derived import _doc, _masks

#: what the audit sent (issue 26) and what real files carry (SIIM's unit-less ages)
KNOWN_BAD = {
    "PatientBirthDate": "19700101-SECRET",
    "StudyDate": "2020-01-01",
    "StudyTime": "25:99:00",
    "PatientSex": "UNKNOWN",
    "PatientAge": "62",
    "PatientWeight": "heavy",
    "AccessionNumber": "A" * 40,
    "StudyID": "x" * 30,
}


def _source(tmp_path):
    path = write_dicom(
        tmp_path / "src.dcm", (np.random.default_rng(0).random((96, 80)) * 4000).astype(np.uint16), pixel_spacing=(0.5, 0.5)
    )
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.StudyDate = "DOE^JANE", "P123", "F", "20200101"
    return ds


def _set(ds: pydicom.Dataset, keyword: str, value: str) -> None:
    """``keyword`` set to ``value`` as a file would carry it: raw bytes, decoded (or not) when read."""
    raw = value.encode("latin-1")
    raw += b" " * (len(raw) % 2)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(tag), dictionary_VR(keyword), len(raw), raw, 0, False, True)


def _derive(ds: pydicom.Dataset, folder):
    folder.mkdir(parents=True, exist_ok=True)
    ptx, right, left = _masks((int(ds.Rows), int(ds.Columns)))
    seg_path = write_seg(folder / "seg.dcm", ds, ptx, (right, left), "v1")
    sr_path = write_report_sr(folder / "sr.dcm", ds, pydicom.dcmread(seg_path), _doc(ptx, right, left, (0.5, 0.5)), "v1", "unet")
    sc_path = write_overlay_sc(folder / "sc.dcm", ds, burn_in(np.full((60, 50, 3), 90, np.uint8)), "v1")
    return seg_path, sr_path, sc_path


@pytest.mark.slow
def test_every_copied_attribute_the_audit_broke_is_dropped_named_and_the_objects_are_valid(tmp_path):
    ds = _source(tmp_path)
    for keyword, value in KNOWN_BAD.items():
        _set(ds, keyword, value)
    problems = header_problems(ds)
    assert set(problems) == set(KNOWN_BAD)
    assert not any(v in reason for reason in problems.values() for v in KNOWN_BAD.values())  # values never quoted
    for path in _derive(ds, tmp_path / "out"):
        out = pydicom.dcmread(path)
        for keyword in KNOWN_BAD:
            assert out.get(keyword, "") in ("", None), (path.name, keyword)  # Type 2: present and empty; else absent
        for keyword in TYPE2_COPIED:
            assert keyword in out, (path.name, keyword)
        assert out.PatientID == "P123" and str(out.PatientName) == "DOE^JANE"  # the valid identifiers stay
        if DCIODVFY:
            assert dciodvfy_errors(path) == [], path.name


VALUE_FAULTS = ("Value invalid", "Multiplicity", "Character", "invalid data values", "Length invalid", "numerated")
COPIED_TEXT = sorted(
    k
    for k in copied_keywords(pydicom.Dataset())
    if dictionary_VR(k) not in UNCHECKED_VRS and not dictionary_VR(k).startswith(("U", "O"))
)
VALUES = st.one_of(
    st.sampled_from([*KNOWN_BAD.values(), "", "M", "20201231", "120000", "034Y", "1.75", "A^B", "x" * 70, "a\\b", "é"]),
    st.text(st.characters(codec="latin-1", exclude_categories=("Cs",)), max_size=80),
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keyword=st.sampled_from(COPIED_TEXT), value=VALUES)
def test_any_value_in_any_copied_attribute_still_gives_valid_derived_objects(tmp_path_factory, keyword, value):
    folder = tmp_path_factory.mktemp("fuzz")
    ds = _source(folder)
    _set(ds, keyword, value)
    bad = keyword in header_problems(ds)
    clean = clean_source(ds)
    assert (keyword not in clean or clean[keyword].value in ("", None)) if bad else keyword in clean
    for path in _derive(ds, folder / "out"):
        if DCIODVFY:
            # the value's own faults (VR, length, multiplicity, characters, enumerated values); a module the
            # source fills in part (a Responsible Person without the Type 1C role) is the source's, copied as it is
            errors = [e for e in dciodvfy_errors(path) if any(w in e for w in VALUE_FAULTS)]
            assert errors == [], (keyword, path.name, errors)


def test_a_bad_header_is_one_qc_warning_and_never_changes_the_answer(tmp_path, tiny_pipeline):
    ds = _source(tmp_path)
    good = tmp_path / "good.dcm"
    ds.save_as(good)
    for keyword, value in KNOWN_BAD.items():
        _set(ds, keyword, value)
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    a, b = (tiny_pipeline.analyse(load_radiograph(p)).report for p in (good, bad))
    assert a["pneumothorax"] == b["pneumothorax"] and a["right"] == b["right"] and a["left"] == b["left"]
    assert "header_values_dropped" not in a["qc"]["warnings"] and b["qc"]["warnings"].count("header_values_dropped") == 1
    assert set(b["qc"]["header_values_dropped"]) == set(KNOWN_BAD)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """An untrained U-Net-R18 at 64² with seeded weights: the answer only has to be the same for both files."""
    import torch

    from ptxseg.artifacts.checkpoint import save_weights
    from ptxseg.clinical.pipeline import ClinicalPipeline
    from ptxseg.models import create_model

    from .conftest import model_card

    torch.manual_seed(0)
    weights = save_weights(tmp_path_factory.mktemp("m") / "best.safetensors", create_model("unet", encoder="resnet18"), model_card())
    return ClinicalPipeline(weights.parent, lungs=False)
