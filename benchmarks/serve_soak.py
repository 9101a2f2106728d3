"""A soak of ``ptxseg serve`` on loopback: ``--minutes`` at ``--concurrency`` clients sending a mix of good and
hostile uploads, while idle sockets come and go; every request must be answered, none with a 5xx.

    .venv/bin/python benchmarks/serve_soak.py [--minutes 10] [--concurrency 4] [--model RUN]

The script starts the server itself (a random U-Net-ResNet-18 at 512² unless ``--model`` names a run directory;
the shipped lung-field model; ``--queue 8``) on a free loopback port and sends, round-robin per client: a good
PNG, a good DICOM, a DICOM with malformed header values (birth date, study date and time, sex, age), a DICOM with a
``../../x`` and a 10,000-character UID, a truncated DICOM, a text file named ``.dcm``, a PNG declaring 36 MP, nine
files in one request (queue 8), an empty upload; every 30 s it opens 50 sockets that never send a request. Printed:
requests answered by status, transport errors, 5xx count, the server's resident memory at start and end (VmRSS),
and whether /metrics counts what the clients saw. Exit status 1 when a 5xx or a transport error occurred.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import io
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_amplification import _random_run, make_upload  # noqa: E402 - a sibling script, not a package


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _dicom_with(folder: Path, **values: str) -> bytes:
    import pydicom

    from ptxseg.io.dicom import write_dicom

    path = write_dicom(
        folder / "x.dcm", (np.random.default_rng(0).random((768, 768)) * 4000).astype(np.uint16), pixel_spacing=(0.5, 0.5)
    )
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        raw = value.encode("latin-1") + b" " * (len(value) % 2)
        vr = pydicom.datadict.dictionary_VR(keyword)
        ds[tag] = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(tag), vr, len(raw), raw, 0, False, True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def uploads(folder: Path) -> dict[str, list[tuple[str, bytes]]]:
    """name → the files of one request."""
    import cv2

    good_png = make_upload("png", 1024, folder)
    good_dcm = _dicom_with(folder)
    bad_header = _dicom_with(
        folder, PatientBirthDate="19700101-SECRET", StudyDate="2020-01-01", StudyTime="25:99:00", PatientSex="UNKNOWN", PatientAge="62"
    )
    bad_uids = _dicom_with(folder, SOPInstanceUID="../../x", StudyInstanceUID="1.2." + "3" * 10_000)
    huge = cv2.imencode(".png", np.zeros((6000, 6000), np.uint8))[1].tobytes()
    return {
        "good png": [("a.png", good_png)],
        "good dicom": [("a.dcm", good_dcm)],
        "bad header values": [("b.dcm", bad_header)],
        "hostile uids": [("c.dcm", bad_uids)],
        "truncated dicom": [("d.dcm", good_dcm[: len(good_dcm) // 3])],
        "text as .dcm": [("e.dcm", b"not a radiograph\n" * 100)],
        "36 MP png": [("f.png", huge)],
        "nine files": [(f"g{k}.png", good_png) for k in range(9)],
        "empty": [("h.png", b"")],
        "good pair": [("i.png", good_png), ("j.dcm", good_dcm)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = Path(args.model) if args.model else _random_run(folder)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-c",
            "from ptxseg.cli import run; run()",
            "serve",
            str(model),
            "--port",
            str(port),
            "--store",
            str(folder / "store"),
            "--queue",
            "8",
        ]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(folder / "serve.log", "w"))  # noqa: SIM115
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        cases = uploads(folder)
        names = list(cases)
        rss_start = _rss_mb(server.pid)
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        lock, stop = threading.Lock(), threading.Event()
        deadline = time.monotonic() + args.minutes * 60

        def client(k: int) -> None:
            i = k
            with httpx.Client(timeout=180) as http:
                while time.monotonic() < deadline:
                    name = names[i % len(names)]
                    i += 1
                    try:
                        r = http.post(f"{url}/v1/predict", files=[("file", f) for f in cases[name]])
                        outcome = str(r.status_code)
                    except httpx.HTTPError as exc:
                        outcome = f"error:{type(exc).__name__}"
                    with lock:
                        counts[(name, outcome)] += 1

        def idle_sockets() -> None:
            while not stop.wait(30):
                held = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
                stop.wait(15)
                for s in held:
                    s.close()

        threading.Thread(target=idle_sockets, daemon=True).start()
        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(client, range(args.concurrency)))
        stop.set()
        rss_end = _rss_mb(server.pid)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        server.terminate()
        server.wait(120)
        log = (folder / "serve.log").read_text()
    by_status = collections.Counter()
    for (name, outcome), n in sorted(counts.items()):
        print(f"{name:>18}: {outcome} × {n}")
        by_status[outcome] += n
    total = sum(by_status.values())
    five = sum(n for s, n in by_status.items() if s.startswith("5"))
    errors = sum(n for s, n in by_status.items() if s.startswith("error"))
    answered_200 = [
        line for line in metrics.splitlines() if line.startswith('ptxseg_requests_total{route="/v1/predict",status="200"}')
    ]
    print(f"requests {total} in {args.minutes:g} min at concurrency {args.concurrency}: {dict(by_status)}")
    print(f"5xx: {five}; transport errors: {errors}; server RSS {rss_start:.0f} MB at start, {rss_end:.0f} MB at end")
    print(f"/metrics: {answered_200[0] if answered_200 else 'no 200 line'} (clients saw {by_status.get('200', 0)})")
    print(f"server log: {len(log.splitlines())} lines, 'Traceback' {log.count('Traceback')} times")
    sys.exit(1 if five or errors else 0)


if __name__ == "__main__":
    main()
