"""What every DICOM object ptxseg derives from a source radiograph shares: deterministic UIDs and a clean copy
of the source's patient and study attributes.

Deterministic UIDs make re-processing idempotent: the same source instance analysed by the same model version
gets the same SEG, SC and SR UIDs, so a PACS that receives them again replaces instead of adding; a new model
version gets new ones. They live under the ``2.25`` root (ISO/IEC 9834-8: a UUID as one integer), from a
name-based UUID (SHA-1, RFC 4122 version 5) of the parts.
"""

from __future__ import annotations

import copy
import functools
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pydicom
from pydicom.valuerep import validate_value

#: the namespace of ptxseg's name-based UUIDs (itself a version-5 UUID of the project's name)
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/ptxseg/ptxseg/derived-uid")

#: Type 2 patient and study attributes the derived objects copy from the source (present, empty when unknown)
TYPE2_COPIED = (
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
#: what highdicom copies into a derived object besides the Patient and Study modules: the acquisition equipment
#: (Contributing Equipment Sequence of a Secondary Capture)
EQUIPMENT_COPIED = (
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "DeviceSerialNumber", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime",
)  # fmt: skip
#: enumerated values highdicom enforces on copied attributes (a value outside them is refused, not written)
ENUMERATED = {
    "PatientSex": frozenset({"M", "F", "O"}),
    "PatientIdentityRemoved": frozenset({"YES", "NO"}),
    "QualityControlSubject": frozenset({"YES", "NO"}),
    "TypeOfPatientID": frozenset({"TEXT", "RFID", "BARCODE"}),
    "PatientSexNeutered": frozenset({"ALTERED", "UNALTERED"}),
    "SmokingStatus": frozenset({"YES", "NO", "UNKNOWN"}),
}
#: VRs whose values are identifiers copied as they are (a source's UID is not ours to fix) or not text
UNCHECKED_VRS = frozenset({"UI", "SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"})


def derived_uid(*parts: str) -> str:
    """A UID determined by ``parts`` (e.g. source SOP Instance UID, model version, object kind): ``2.25.<int>``,
    at most 44 characters, the same on every machine and run."""
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(31).join(parts)).int}"


def copied_keywords(source: pydicom.Dataset) -> frozenset[str]:
    """Keywords of the root attributes a derived object copies from ``source``: the Patient and Study
    information entities of the source's IOD (highdicom's ``copy_patient_and_study_information``; a Computed
    Radiography IOD when the class is unknown) and the acquisition equipment."""
    return _copied_for_class(str(source.get("SOPClassUID") or ""))


@functools.cache
def _copied_for_class(sop_class: str) -> frozenset[str]:
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    iods = get_sop_class_iod_map()
    iod = iods.get(sop_class, iods["1.2.840.10008.5.1.4.1.1.1"])
    attributes = get_module_attribute_map()
    keys = [m["key"] for m in get_iod_module_map()[iod] if m["ie"] in ("Patient", "Study")]
    return frozenset(str(a["keyword"]) for k in keys for a in attributes[k] if not a["path"]) | frozenset(EQUIPMENT_COPIED)


def invalid_reason(element: pydicom.DataElement, ascii_only: bool = False) -> str | None:
    """Why ``element``'s value cannot be copied into a derived object — it breaks its VR, its value multiplicity,
    an enumerated value highdicom enforces, or (``ascii_only``: the source declares no character set) the default
    repertoire — or None when it can. Never includes the value: it may identify the patient."""
    if element.VR in UNCHECKED_VRS:
        return None
    try:
        value = element.value
        values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
        for v in values:
            if v not in (None, ""):
                validate_value(element.VR, v, pydicom.config.RAISE)
    except Exception:  # noqa: BLE001 - undecodable, wrong type, breaks the VR: all mean "not copyable"
        return f"not a valid {element.VR} value"
    if element.VR == "PN" and any(len(group) > 64 for v in values for group in str(v).split("=")):
        return "a name group longer than 64 characters"  # pydicom checks the components; the standard, each group
    low, high = _multiplicity(element.keyword)
    if values and values != [""] and not low <= len(values) <= high:
        return f"{len(values)} values where {low}-{high if high < 10**6 else 'n'} are allowed"
    allowed = ENUMERATED.get(element.keyword)
    if allowed is not None and not all(str(v) in allowed or v in (None, "") for v in values):
        return f"not one of {', '.join(sorted(allowed))}"
    controls = _TEXT_CONTROLS if element.VR in ("LT", "ST", "UT") else "\x1b"
    if any(ch in _CONTROL_CHARS and ch not in controls for v in values for ch in str(v)):
        return "control characters its VR does not allow"
    if ascii_only and not all(str(v).isascii() for v in values):
        return "characters outside the default character set, and the file declares none"
    return None


_CONTROL_CHARS = frozenset(map(chr, [*range(32), 127]))
#: the control characters text VRs allow (line breaks, tab, form feed; ESC for character-set switching)
_TEXT_CONTROLS = "\r\n\f\t\x1b"


def _multiplicity(keyword: str) -> tuple[int, int]:
    """The (least, most) number of values the data dictionary allows ``keyword`` (``1-n``: most is a million)."""
    try:
        vm = pydicom.datadict.dictionary_VM(keyword)
    except KeyError:
        return 0, 10**6
    low, _, high = vm.partition("-")
    low_n = int(low) if low.isdigit() else 1
    return low_n, (int(high) if high.isdigit() else 10**6) if high else low_n


def header_problems(source: pydicom.Dataset) -> dict[str, str]:
    """Copied attributes of ``source`` whose value cannot go into a derived object: keyword → reason (values never
    shown). The derived objects leave them out (Type 2: empty); the analysis never reads them."""
    out = {}
    ascii_only = not source.get("SpecificCharacterSet")
    for keyword in sorted(copied_keywords(source)):
        if keyword not in source:
            continue
        try:
            reason = invalid_reason(source.data_element(keyword), ascii_only)
        except Exception:  # noqa: BLE001 - a value whose bytes do not parse as its VR (e.g. 10 bytes of FD)
            reason = "bytes that do not parse as its VR"
        if reason:
            out[keyword] = reason
    return out


#: the source's own identifiers, which derived objects reference (never copy or replace)
SOURCE_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def invalid_uids(source: pydicom.Dataset) -> list[str]:
    """Keywords of :data:`SOURCE_UIDS` present in ``source`` with a value that is not a DICOM UID (e.g. SIIM stage 2's
    ``ID_0011fe81e``): outputs are still named safely by it, but references to it break the UI VR."""
    out = []
    for keyword in SOURCE_UIDS:
        value = str(source.get(keyword) or "")
        try:
            if value:
                validate_value("UI", value, pydicom.config.RAISE)
        except Exception:  # noqa: BLE001 - any refusal of the value means "not a UID"
            out.append(keyword)
    return out


def clean_source(source: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of ``source`` that highdicom can derive standard objects from: every copied attribute whose value
    breaks its VR or an enumerated value removed (:func:`header_problems`; a Type 2 one emptied), Type 2
    patient/study attributes present (empty when unknown), and Patient Orientation present (a projection
    radiograph has no frame of reference, so a derived image must state it, empty when the source does not).
    The caller's dataset is not changed."""
    out = copy.deepcopy(source)
    for keyword in header_problems(out):
        del out[keyword]
    for keyword in TYPE2_COPIED:
        if keyword not in out:
            setattr(out, keyword, "")
    if "PatientOrientation" not in out:
        out.PatientOrientation = ""
    return out


def derived_uids(source: pydicom.Dataset, version: str, kind: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the ``kind`` object (``"sc"``, ``"sr"`` …) that ``version``
    derives from ``source``: one series per study, model version and kind; one instance per source instance."""
    sop = str(source.get("SOPInstanceUID") or "")
    study = str(source.get("StudyInstanceUID") or sop)
    return derived_uid(study, version, f"{kind}-series"), derived_uid(sop, version, kind)


@contextmanager
def copying_identifiers() -> Iterator[None]:
    """Silence the warnings highdicom and pydicom raise while a derived object copies the source's identifiers as
    they are (a UID that breaks its VR, a one-component patient name): they are the source's, not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR")
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        yield
