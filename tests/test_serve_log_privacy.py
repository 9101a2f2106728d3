"""The real ``ptxseg serve``'s log never carries what identifies an upload (issue 26): a DICOM whose UIDs break
their VR (``../../x``, a 10,000-character UID) and whose header names a patient makes pydicom warn, quoting the
value; the warning reaches the log as one line with the value hashed."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest

from ptxseg.io.dicom import write_dicom
from ptxseg.io.names import hashed_uid

from .conftest import tiny_models
from .serving import Server

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers

SECRETS = {
    "SOPInstanceUID": "../../x",
    "StudyInstanceUID": "1.2." + "3" * 10_000,
    "PatientName": "SECRETSURNAME^GIVEN",
    "PatientID": "PID-SECRET-4242",
    "AccessionNumber": "ACC-SECRET-77",
}


def _hostile_dicom(tmp_path) -> bytes:
    path = write_dicom(
        tmp_path / "x.dcm", (np.random.default_rng(1).random((128, 128)) * 4000).astype(np.uint16), pixel_spacing=(0.7, 0.7)
    )
    ds = pydicom.dcmread(path)
    for keyword, value in SECRETS.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = SECRETS["SOPInstanceUID"]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_no_uid_name_or_id_of_an_upload_reaches_the_log(tmp_path):
    models = tiny_models(12, seed=41)
    data = _hostile_dicom(tmp_path)
    server = Server(models[1], tmp_path / "store")
    try:
        r = httpx.post(f"{server.url}/v1/predict", files={"file": ("hostile.dcm", data, "application/dicom")}, timeout=120)
        assert r.status_code in (200, 422), r.text[:300]
    finally:
        log = server.stop()
    assert "../../x" not in log and "3" * 40 not in log
    for value in ("SECRETSURNAME", "PID-SECRET", "ACC-SECRET"):
        assert value not in log, value
    # the warning was routed, not lost: one line naming pydicom's complaint with the UID's hash
    assert "Invalid value for VR UI" in log and f"#{hashed_uid('../../x')}" in log, log[-2000:]
