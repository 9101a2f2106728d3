"""Throughput and latency of ``ptxseg listen`` (loopback only): C-STORE in, results stored in a real Orthanc.

    .venv/bin/python benchmarks/listen_throughput.py MODEL [--n 100] [--images ../shared/data/siim/unlabeled_dicom]

Starts Orthanc (Debian package) with its DICOM port open, starts ``ptxseg listen MODEL --dest ORTHANC@…`` on a free
port, then sends real SIIM DICOMs (1024², JPEG baseline) with a pynetdicom SCU:

1. one at a time: each instance sent, then waited for until its SR is stored in Orthanc (5 instances);
2. a burst of ``--n`` instances in one association, as a modality or router pushing a backlog.

Prints instances/min (first C-STORE to the last SR stored) and p50/p95 latency from each C-STORE's
acknowledgement to its SR stored in Orthanc. Each SIIM file is sent with fresh, valid UIDs derived from its name
(the stage-2 files carry ``ID_…`` identifiers that are not UIDs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pydicom
from pynetdicom import AE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triage_throughput import AUTH, SHARED, _fresh, _port  # noqa: E402 - the same inputs as the triage benchmark

SR3D = "1.2.840.10008.5.1.4.1.1.88.34"


def _orthanc(root: Path) -> tuple[subprocess.Popen, str, int]:
    port, dicom_port = _port(), _port()
    config = {
        "Name": "bench", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"), "HttpPort": port,
        "DicomPort": dicom_port, "DicomServerEnabled": True, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {AUTH[0]: AUTH[1]},
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen([shutil.which("Orthanc"), str(root / "orthanc.json")], **quiet)
    return proc, f"http://127.0.0.1:{port}", dicom_port


_READ: set[str] = set()  # SRs already looked at


def _stored_srs(http: httpx.Client) -> dict[str, float]:
    """Source SOP Instance UID → when its SR was first seen in Orthanc (polled through /tools/find)."""
    found = http.post("/tools/find", json={"Level": "Instance", "Query": {"SOPClassUID": SR3D}}).json()
    out = {}
    for inst in found:
        if inst in _READ:
            continue
        _READ.add(inst)
        tags = http.get(f"/instances/{inst}/tags", params={"simplify": ""}).json()
        for item in tags.get("CurrentRequestedProcedureEvidenceSequence", []):
            for series in item.get("ReferencedSeriesSequence", []):
                for ref in series.get("ReferencedSOPSequence", []):
                    if ref.get("ReferencedSOPClassUID") != "1.2.840.10008.5.1.4.1.1.66.4":  # the source, not the SEG
                        out[ref["ReferencedSOPInstanceUID"]] = time.monotonic()
    return out


def _send(port: int, payloads: list[bytes]) -> dict[str, float]:
    """C-STORE ``payloads`` in one association; SOP Instance UID → when its acknowledgement came."""
    import io

    datasets = [pydicom.dcmread(io.BytesIO(p)) for p in payloads]
    ae = AE(ae_title="BENCH")
    for cx in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}:
        ae.add_requested_context(*cx)
    assoc = ae.associate("127.0.0.1", port, ae_title="PTXSEG")
    acked = {}
    for ds in datasets:
        status = assoc.send_c_store(ds)
        if getattr(status, "Status", None) == 0:
            acked[str(ds.SOPInstanceUID)] = time.monotonic()
    assoc.release()
    return acked


def _wait(http: httpx.Client, acked: dict[str, float], seen: dict[str, float], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(uid not in seen for uid in acked) and time.monotonic() < deadline:
        for uid, t in _stored_srs(http).items():
            seen.setdefault(uid, t)
        time.sleep(0.2)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--images", type=Path, default=SHARED)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Invalid value for VR")  # the stage-2 files' ID_… UIDs, replaced
    if shutil.which("Orthanc") is None:
        print("needs Orthanc (apt-get install orthanc)", file=sys.stderr)
        return 2
    files = sorted(args.images.glob("*.dcm"))
    burst = [_fresh(f) for f in files[: args.n]]
    single = [_fresh(f, salt="single") for f in files[:5]]
    root = Path(tempfile.mkdtemp(prefix="ptxseg-bench-listen-"))
    server, url, dicom_port = _orthanc(root)
    node = None
    http = httpx.Client(base_url=url, auth=AUTH, timeout=60)
    try:
        for _ in range(300):
            try:
                if http.get("/system").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        port = _port()
        cmd = [sys.executable, "-m", "ptxseg", "listen", args.model, "--port", str(port), "--spool", str(root / "spool")]
        cmd += ["--dest", f"ORTHANC@127.0.0.1:{dicom_port}"]
        t_start = time.monotonic()
        node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in node.stderr:  # ready once it listens (models loaded)
            if "listening as" in line:
                break
        print(f"start-up (models loaded, listening): {time.monotonic() - t_start:.1f} s; {os.cpu_count()} CPU cores")
        seen: dict[str, float] = {}
        latencies = []
        for payload in single:  # an idle node, one radiograph at a time
            acked = _send(port, [payload])
            _wait(http, acked, seen, 300)
            latencies += [seen[u] - t for u, t in acked.items() if u in seen]
        print(f"one at a time ({len(single)} instances): C-STORE ack → SR stored median {statistics.median(latencies):.2f} s")
        t0 = time.monotonic()
        acked = _send(port, burst)
        sent = time.monotonic() - t0
        _wait(http, acked, seen, args.timeout)
        done = [u for u in acked if u in seen]
        lat = [seen[u] - acked[u] for u in done]
        span = max(seen[u] for u in done) - t0
        print(f"burst of {len(burst)}: {len(acked)} acknowledged in {sent:.1f} s ({len(burst) / sent:.1f} instances/s received)")
        print(f"burst: {len(done)}/{len(acked)} results stored; {60 * len(done) / span:.1f} instances/min (first C-STORE to last SR)")
        p50, p95 = statistics.median(lat), _pct(lat, 0.95)
        print(f"burst latency C-STORE ack → SR stored: p50 {p50:.1f} s, p95 {p95:.1f} s (a queue builds up)")
        return 0 if len(done) == len(acked) == len(burst) else 1
    finally:
        http.close()
        if node is not None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(120)
            except subprocess.TimeoutExpired:
                node.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
