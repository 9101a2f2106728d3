"""Throughput and latency of ``ptxseg triage`` on a real Orthanc (loopback only; starts and stops its own).

    .venv/bin/python benchmarks/triage_throughput.py MODEL [--n 40] [--images ../shared/data/siim/unlabeled_dicom]

Starts Orthanc (Debian package) on free loopback ports with a temporary storage folder and ptxseg's metadata
declared, starts the worker following its change feed, then uploads ``--n`` real SIIM DICOMs (1024², JPEG
baseline) one after another and watches each source instance's metadata. Prints instances analysed per minute
(first upload to last result) and the latency from each upload to its result (SEG, SC, SR and metadata stored).

The SIIM stage-2 files were re-anonymised with invalid identifiers (``ID_…`` as SOP Instance UID, no Study or
Series UID) that Orthanc refuses; each is uploaded with fresh UIDs derived from its file name (pixels and the
rest of the header untouched).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pydicom

from ptxseg.io.derived import derived_uid
from ptxseg.pacs.results import orthanc_user_metadata

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim" / "unlabeled_dicom"
AUTH = ("bench", "bench-password-123")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh(path: Path, salt: str = "") -> bytes:
    """The file's bytes with fresh, valid Study/Series/SOP Instance UIDs derived from its name (and ``salt``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR")  # the file's own ID_… UIDs, replaced below
        ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = derived_uid("bench", salt, path.name, "sop")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = derived_uid("bench", salt, path.name, "study")
    ds.SeriesInstanceUID = derived_uid("bench", salt, path.name, "series")
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--images", type=Path, default=SHARED)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    orthanc = shutil.which("Orthanc")
    if orthanc is None:
        print("needs Orthanc (apt-get install orthanc)", file=sys.stderr)
        return 2
    files = sorted(args.images.glob("*.dcm"))[: args.n]
    payloads = [_fresh(f) for f in files]
    root = Path(tempfile.mkdtemp(prefix="ptxseg-bench-"))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    config = {
        "Name": "bench", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"), "HttpPort": port,
        "DicomPort": _port(), "DicomServerEnabled": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {AUTH[0]: AUTH[1]}, "UserMetadata": orthanc_user_metadata(),
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config))
    server = subprocess.Popen([orthanc, str(root / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    http = httpx.Client(base_url=url, auth=AUTH, timeout=60)
    try:
        for _ in range(300):
            try:
                if http.get("/system").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        env = {**os.environ, "PTXSEG_ORTHANC_USER": AUTH[0], "PTXSEG_ORTHANC_PASSWORD": AUTH[1]}
        (root / "triage.yaml").write_text(f"work_dir: {root / 'work'}\npoll_s: 0.2\n")
        cmd = [sys.executable, "-m", "ptxseg", "triage", "--orthanc", url, args.model, "--config", str(root / "triage.yaml")]
        worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        for line in worker.stderr:  # ready once it follows the feed (models loaded)
            if "following changes" in line:
                break
        uploaded: dict[str, float] = {}
        for data in payloads:
            uploaded[http.post("/instances", content=data).json()["ID"]] = time.monotonic()
        done: dict[str, float] = {}
        deadline = time.monotonic() + args.timeout
        while len(done) < len(uploaded) and time.monotonic() < deadline:
            for i in uploaded:
                if i not in done:
                    status = http.get(f"/instances/{i}/metadata", params={"expand": ""}).json().get("ptxseg-status")
                    if status is not None:
                        done[i] = time.monotonic()
            time.sleep(0.05)
        statuses = {}
        for i in done:
            s = http.get(f"/instances/{i}/metadata/ptxseg-status").text
            statuses[s.split(":")[0]] = statuses.get(s.split(":")[0], 0) + 1
        latency = sorted(done[i] - uploaded[i] for i in done)
        span = max(done.values()) - min(uploaded.values())
        print(f"{len(done)}/{len(uploaded)} instances answered {statuses}; {os.cpu_count()} CPU cores")
        print(f"throughput: {60 * len(done) / span:.1f} instances/min ({span:.1f} s from the first upload to the last result)")
        print(
            f"latency upload → result: p50 {statistics.median(latency):.2f} s, "
            f"p95 {latency[min(len(latency) - 1, round(0.95 * (len(latency) - 1)))]:.2f} s, max {latency[-1]:.2f} s "
            f"(uploads arrive faster than they are analysed: a queue builds up)"
        )
        single = []
        for k in range(5):  # an idle worker, one radiograph at a time: the latency a single study sees
            t0 = time.monotonic()
            i = http.post("/instances", content=_fresh(files[k], salt="single")).json()["ID"]
            while "ptxseg-status" not in http.get(f"/instances/{i}/metadata", params={"expand": ""}).json():
                if time.monotonic() - t0 > 120:
                    break
                time.sleep(0.05)
            single.append(time.monotonic() - t0)
        print(f"latency of one radiograph at a time (idle worker, 5 uploads): median {statistics.median(single):.2f} s")
        return 0 if len(done) == len(uploaded) else 1
    finally:
        http.close()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
