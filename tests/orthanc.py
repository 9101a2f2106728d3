"""A real Orthanc (Debian package ``orthanc``) for the tests: free loopback ports, a temporary storage folder,
basic auth, ptxseg's user metadata declared. Tests that need it skip with the reason when it is not installed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ptxseg.pacs.results import orthanc_user_metadata

from .serving import free_port

ORTHANC = shutil.which("Orthanc")
DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
needs_orthanc = pytest.mark.skipif(
    ORTHANC is None, reason="needs Orthanc (Debian package orthanc; make test installs it as root with apt-get)"
)
USER, PASSWORD = "ptxseg-test", "orthanc-test-password"


class Orthanc:
    """``Orthanc config.json`` with its storage under ``root``; :meth:`start` waits until /system answers. With
    ``dicom`` it also takes C-STORE on ``dicom_port`` (any calling AE title, called AE title ORTHANC)."""

    def __init__(self, root: Path, dicom: bool = False) -> None:
        self.root = root
        self.port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = (USER, PASSWORD)
        config = {
            "Name": "ptxseg-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.port,
            "DicomPort": self.dicom_port,
            "DicomServerEnabled": dicom,  # C-STORE SCP on dicom_port (AE title ORTHANC), for ptxseg listen's tests
            "DicomAet": "ORTHANC",
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(DICOMWEB)] if DICOMWEB.exists() else [],
            "UserMetadata": orthanc_user_metadata(),
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "orthanc.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.root / "orthanc.log", "a")  # noqa: SIM115 - the process writes to it until stopped
        self.proc = subprocess.Popen([ORTHANC, str(self.root / "orthanc.json")], stdout=log, stderr=log, cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited {self.proc.returncode}: {(self.root / 'orthanc.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("Orthanc did not answer within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- REST helpers for the checks --------------------------------------------------------------------------------
    def get(self, path: str, **kw):
        r = httpx.get(f"{self.url}{path}", auth=self.auth, timeout=60, **kw)
        r.raise_for_status()
        return r

    def upload(self, data: bytes) -> str:
        r = httpx.post(f"{self.url}/instances", content=data, auth=self.auth, timeout=60)
        r.raise_for_status()
        return r.json()["ID"]

    def instances(self) -> list[str]:
        return self.get("/instances").json()

    def tags(self, instance: str) -> dict:
        return self.get(f"/instances/{instance}/simplified-tags").json()

    def metadata(self, instance: str) -> dict:
        return self.get(f"/instances/{instance}/metadata", params={"expand": ""}).json()
