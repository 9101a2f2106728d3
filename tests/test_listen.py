"""``ptxseg listen`` against real peers on loopback (issue 29): pynetdicom SCUs send real SIIM DICOMs and the
MONOCHROME1 CR, real Orthancs take the results by C-STORE (its DICOM port) and by STOW-RS (its DICOMweb plugin),
and every result read back from them passes dciodvfy. Callers outside the allow list, a wrong called AE title and
a full spool are refused at association. Faults are real: a destination stopped and restarted, SIGKILLs after
receipt, mid-analysis (three times: the film is recorded as failed) and between two sends."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from ptxseg.node.spool import instance_key

from .conftest import shared_path, tiny_models
from .orthanc import PASSWORD, USER, Orthanc, needs_orthanc
from .serving import free_port
from .test_triage import _phantoms, derived_by_source

pytestmark = [pytest.mark.slow, needs_orthanc]  # real servers and trained models

LISTEN = [sys.executable, "-c", "from ptxseg.cli import run; run()", "listen"]
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(12, seed=41)


class Listener:
    """``ptxseg listen`` as a subprocess on a free port, with its own spool."""

    def __init__(self, model: Path, root: Path, *args: str, fault: str | None = None, config: str = "") -> None:
        self.root, self.port = root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "node.yaml").write_text(f"spool: {root / 'spool'}\nretry_s: 0.2\nmax_backoff_s: 1\n{config}")
        env = {**os.environ, "PTXSEG_STOW_USER": USER, "PTXSEG_STOW_PASSWORD": PASSWORD}
        env.pop("PTXSEG_LISTEN_FAULT", None)
        env |= {"PTXSEG_LISTEN_FAULT": fault} if fault else {}
        cmd = [*LISTEN, str(model), "--config", str(root / "node.yaml"), "--port", str(self.port), *args]
        self.log = open(root / "listen.log", "a")  # noqa: SIM115 - closed in stop()
        self.start = self.log.tell()  # a restarted node appends: its own lines begin here
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"listen exited {self.proc.returncode}: {self.text()[-2000:]}"
            if "listening as" in self.text()[self.start :]:  # logged once the port is open (an echo may be refused on purpose)
                return
            time.sleep(0.3)
        raise AssertionError(f"listen did not start within 120 s: {self.text()[-2000:]}")

    def text(self) -> str:
        return (self.root / "listen.log").read_text()

    def counts(self, table: str = "instances") -> Counter:
        with sqlite3.connect(self.root / "spool" / "queue.sqlite3") as db:
            return Counter(dict(db.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status").fetchall()))

    def reasons(self, status: str) -> set[str]:
        with sqlite3.connect(self.root / "spool" / "queue.sqlite3") as db:
            return {r for (r,) in db.execute("SELECT reason FROM instances WHERE status = ?", (status,))}

    def wait_for(self, check, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            assert self.proc.poll() is None or self.proc.returncode == 0, f"listen died: {self.text()[-2000:]}"
            time.sleep(0.5)
        raise AssertionError(f"timed out; instances {self.counts()}, deliveries {self.counts('deliveries')}: {self.text()[-1500:]}")

    def killed(self, timeout: float = 180) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)
        self.log.close()
        return self.text()


def echo(port: int, aet: str = "MODALITY", called: str = "PTXSEG") -> bool:
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return getattr(status, "Status", None) == 0x0000


def send(port: int, files: list[Path], aet: str = "MODALITY", called: str = "PTXSEG"):
    """C-STORE ``files`` in one association: the status of each (None when the association went), or the
    association itself when it was not established."""
    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title=aet)
    for sop_class, syntax in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}:
        ae.add_requested_context(sop_class, syntax)  # as a modality does: the file's own transfer syntax
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return assoc
    codes = []
    for ds in datasets:
        status = assoc.send_c_store(ds) if assoc.is_established else None
        codes.append(getattr(status, "Status", None))
    if assoc.is_established:
        assoc.release()
    return codes


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _dicom_orthanc(root: Path) -> Orthanc:
    return Orthanc(root, dicom=True)


def _validate(orthanc: Orthanc, tmp: Path) -> int:
    """dciodvfy over every object ptxseg stored in ``orthanc``; returns how many were checked."""
    if DCIODVFY is None:
        pytest.skip("needs dciodvfy (Debian package dicom3tools; make test installs it)")
    checked = 0
    for i in orthanc.instances():
        if orthanc.tags(i).get("Manufacturer") != "ptxseg":
            continue
        path = tmp / f"{i}.dcm"
        path.write_bytes(orthanc.get(f"/instances/{i}/file").content)
        out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, (orthanc.tags(i).get("SOPClassUID"), errors)
        checked += 1
    return checked


def test_real_siim_films_in_seg_sc_sr_out_by_cstore_and_stow(models, tmp_path):
    _, model = models
    by_dimse, by_stow = _dicom_orthanc(tmp_path / "orthanc-a"), Orthanc(tmp_path / "orthanc-b")
    node = None
    try:
        dest = f"ORTHANC@127.0.0.1:{by_dimse.dicom_port}"
        node = Listener(model, tmp_path / "node", "--dest", dest, "--stow", f"{by_stow.url}/dicom-web")
        films = sorted(shared_path("siim", "train_real", "images").glob("*.dcm"))[:3] + [shared_path("dicom", "chest_pa_cr_mono1.dcm")]
        odd = _phantoms(models[0], tmp_path / "odd", 2)
        lateral = pydicom.dcmread(odd[0])
        lateral.ViewPosition = "LL"
        lateral.save_as(odd[0])
        ct = pydicom.dcmread(odd[1])
        ct.Modality = "CT"
        ct.save_as(odd[1])
        assert send(node.port, [*films, *odd]) == [0x0000] * 6
        assert send(node.port, films[:1]) == [0x0000]  # the same instance again: acknowledged, analysed once
        node.wait_for(lambda: node.counts("deliveries")["done"] == 4 * 3 * 2)
        expected = {_sop(f): Counter({"SEG": 1, "SC": 1, "SR": 1}) for f in films}
        assert derived_by_source(by_dimse) == expected and derived_by_source(by_stow) == expected
        assert node.counts() == Counter({"analysed": 4, "not-triaged": 2})
        assert node.reasons("not-triaged") == {"modality CT", "the header says this is not a frontal (PA/AP) view"}
        assert _validate(by_dimse, tmp_path) == 12 and _validate(by_stow, tmp_path) == 12
        text = node.stop()
        assert not any(_sop(f) in text for f in [*films, *odd])  # hashed UIDs only
        assert not list((tmp_path / "node" / "spool" / "incoming").glob("*.dcm"))  # delivered: the spool is emptied
    finally:
        if node is not None:
            node.stop()
        by_dimse.stop()
        by_stow.stop()


def test_only_expected_callers_and_a_full_spool_refuses_associations(models, tmp_path):
    _, model = models
    node = Listener(model, tmp_path / "node", "--allow-aet", "GOODMOD")
    try:
        assert not echo(node.port, aet="OTHER")
        rejected = send(node.port, _phantoms(models[0], tmp_path / "in", 1), aet="OTHER")
        assert rejected.is_rejected and (rejected.acceptor.primitive.result, rejected.acceptor.primitive.diagnostic) == (1, 3)
        assert echo(node.port, aet="GOODMOD") and not echo(node.port, aet="GOODMOD", called="SOMEONE")
    finally:
        text = node.stop()
    assert "calling AE title not on the allow list" in text
    hosts = Listener(model, tmp_path / "hosts", config="allow_hosts: ['127.0.0.2']\n")
    try:
        assert not echo(hosts.port)
    finally:
        assert "peer address not on the allow list" in hosts.stop()
    full = Listener(model, tmp_path / "full", config="max_spool_mb: 0.001\n")
    try:
        refused = send(full.port, _phantoms(models[0], tmp_path / "in2", 1))
        assert refused.is_rejected and refused.acceptor.primitive.result == 2  # transient: the sender keeps it and retries
    finally:
        assert "spool full" in full.stop()


def test_a_destination_down_gets_everything_when_it_returns(models, tmp_path):
    _, model = models
    orthanc = _dicom_orthanc(tmp_path / "orthanc")
    orthanc.stop()
    node = Listener(model, tmp_path / "node", "--dest", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    try:
        films = _phantoms(models[0], tmp_path / "in", 2)
        assert send(node.port, films) == [0x0000, 0x0000]
        node.wait_for(lambda: node.counts()["analysed"] == 2 and "did not answer" in node.text())
        orthanc.start()
        node.wait_for(lambda: node.counts("deliveries") == Counter({"done": 6}))
        assert derived_by_source(orthanc) == {_sop(f): Counter({"SEG": 1, "SC": 1, "SR": 1}) for f in films}
    finally:
        node.stop()
        orthanc.stop()


def test_kills_after_receipt_mid_analysis_and_between_sends_lose_and_duplicate_nothing(models, tmp_path):
    _, model = models
    orthanc = _dicom_orthanc(tmp_path / "orthanc")
    dest = ("--dest", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    spool = tmp_path / "node"
    try:
        received, poison, between, good = _phantoms(models[0], tmp_path / "in", 4)
        # killed after the file is on disk, before it is queued or acknowledged: the sender saw no success
        node = Listener(model, spool, *dest, fault=f"received@{instance_key(_sop(received))}")
        assert send(node.port, [received]) != [0x0000]
        assert node.killed() == -signal.SIGKILL
        node.log.close()
        # killed mid-analysis three times: the fourth start records the film as failed and goes on
        for _ in range(3):
            node = Listener(model, spool, *dest, fault=f"analysis@{instance_key(_sop(poison))}")
            if _ == 0:
                assert send(node.port, [poison]) == [0x0000]
            assert node.killed() == -signal.SIGKILL
            node.log.close()
        # killed after the SEG was stored and recorded, before the SC
        node = Listener(model, spool, *dest, fault=f"between-sends@{instance_key(_sop(between))}")
        node.wait_for(lambda: node.counts().get("failed") == 1)
        assert send(node.port, [between]) == [0x0000]
        assert node.killed() == -signal.SIGKILL
        node.log.close()
        node = Listener(model, spool, *dest)
        assert send(node.port, [received, good]) == [0x0000, 0x0000]  # `received` again: recovered already, once
        node.wait_for(lambda: node.counts("deliveries") == Counter({"done": 9}))
        assert node.counts() == Counter({"analysed": 3, "failed": 1})
        expected = {_sop(f): Counter({"SEG": 1, "SC": 1, "SR": 1}) for f in (received, between, good)}
        assert derived_by_source(orthanc) == expected
        assert "gave up after 3 attempts" in node.stop()
    finally:
        orthanc.stop()


def test_idle_and_trickling_connections_never_lock_out_a_sender(models, tmp_path):
    import socket

    _, model = models
    node = Listener(model, tmp_path / "node", config="max_associations: 1\nrequest_timeout_s: 2\n")
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(20)]
        for s in socks[:5]:
            s.sendall(b"\x01\x00")  # the start of an A-ASSOCIATE-RQ, and then nothing
        time.sleep(0.5)
        assert echo(node.port)  # 20 connections that requested nothing do not count as associations
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        held = ae.associate("127.0.0.1", node.port, ae_title="PTXSEG")
        assert held.is_established
        assert not echo(node.port)  # max_associations: 1 — the second is rejected (transient) while one is open
        held.release()
        assert echo(node.port)
        time.sleep(4)  # past request_timeout_s: every stalled connection has been closed by the node
        for s in socks:
            s.settimeout(2)  # a socket still open times out here and fails the test
            try:
                data = s.recv(16)
            except ConnectionResetError:
                data = b""
            assert data == b""
    finally:
        for s in socks:
            s.close()
        text = node.stop()
    assert "1 associations already open" in text
