"""What every DICOM object ptxseg derives from a source radiograph shares: deterministic UIDs and a clean copy
of the source's patient and study attributes.

Deterministic UIDs make re-processing idempotent: the same source instance analysed by the same model version
gets the same SEG, SC and SR UIDs, so a PACS that receives them again replaces instead of adding; a new model
version gets new ones. They live under the ``2.25`` root (ISO/IEC 9834-8: a UUID as one integer), from a
name-based UUID (SHA-1, RFC 4122 version 5) of the parts.
"""

from __future__ import annotations

import copy
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
#: Type 3 attributes a derived object may copy, dropped when the source's value breaks its VR (e.g. SIIM's "62")
TYPE3_CHECKED = ("PatientAge", "PatientSize", "PatientWeight")


def derived_uid(*parts: str) -> str:
    """A UID determined by ``parts`` (e.g. source SOP Instance UID, model version, object kind): ``2.25.<int>``,
    at most 44 characters, the same on every machine and run."""
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(31).join(parts)).int}"


def clean_source(source: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of ``source`` that highdicom can derive standard objects from: Type 2 patient/study attributes
    present (empty when unknown), Patient Orientation present (a projection radiograph has no frame of
    reference, so a derived image must state it, empty when the source does not), and Type 3 patient attributes
    whose value breaks its VR removed. The caller's dataset is not changed."""
    out = copy.deepcopy(source)
    for keyword in TYPE2_COPIED:
        if keyword not in out:
            setattr(out, keyword, "")
    if "PatientOrientation" not in out:
        out.PatientOrientation = ""
    for keyword in TYPE3_CHECKED:
        if keyword in out and out[keyword].value not in (None, ""):
            try:
                validate_value(out[keyword].VR, out[keyword].value, pydicom.config.RAISE)
            except ValueError:
                del out[keyword]
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
