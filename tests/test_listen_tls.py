"""A C-STORE destination over DICOM TLS: the node's sender against a real pynetdicom TLS SCP with certificates made
by openssl for this test — stored with the right CA, refused (no association, nothing sent) with a wrong one."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, evt

from ptxseg.io.dicom import write_dicom
from ptxseg.node.config import CStoreDestination, Tls
from ptxseg.node.destinations import RESULT_CLASSES, CStoreSender, DeliveryError

from .serving import free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")


def _ca_and_server(folder, name: str) -> tuple:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=folder)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
        "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{name}.key", "-out", f"{name}.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.pem", "-CAkey", f"{name}-ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")  # fmt: skip
    return folder / f"{name}-ca.pem", folder / f"{name}.pem", folder / f"{name}.key"


def test_results_go_over_tls_only_to_the_certificate_the_ca_vouches_for(tmp_path):
    ca, cert, key = _ca_and_server(tmp_path, "hospital")
    other_ca, _, _ = _ca_and_server(tmp_path, "other")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    stored = []

    def on_store(event):
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    scp = AE(ae_title="PACS")
    for uid in RESULT_CLASSES:
        scp.add_supported_context(uid)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, ssl_context=server_ctx, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        sc = write_dicom(tmp_path / "sc.dcm", np.zeros((64, 64), np.uint8), sop_instance_uid="1.2.826.0.1.3680043.8.498.77.1")
        ds = pydicom.dcmread(sc)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RESULT_CLASSES[1]  # as a Secondary Capture
        ds.save_as(sc)
        outcomes = []
        good = CStoreDestination(ae_title="PACS", host="127.0.0.1", port=port, tls=Tls(ca_file=ca))
        CStoreSender(good, "PTXSEG", timeout_s=10).send_all([sc], lambda i, err: outcomes.append(err))
        assert outcomes == [None] and stored == ["1.2.826.0.1.3680043.8.498.77.1"]
        wrong = CStoreDestination(ae_title="PACS", host="127.0.0.1", port=port, tls=Tls(ca_file=other_ca))
        with pytest.raises(DeliveryError, match="did not answer"):
            CStoreSender(wrong, "PTXSEG", timeout_s=10).send_all([sc], lambda i, err: outcomes.append(err))
        plain = CStoreDestination(ae_title="PACS", host="127.0.0.1", port=port)
        with pytest.raises(DeliveryError):
            CStoreSender(plain, "PTXSEG", timeout_s=10).send_all([sc], lambda i, err: outcomes.append(err))
        assert stored == ["1.2.826.0.1.3680043.8.498.77.1"] and outcomes == [None]
    finally:
        server.shutdown()
