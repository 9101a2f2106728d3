"""The real ``ptxseg serve`` process (uvicorn on a free loopback port): start-up, /health while predictions run,
a client that leaves mid-upload, and SIGTERM with requests in flight."""

from __future__ import annotations

import concurrent.futures as cf
import signal
import socket
import subprocess
import time

import httpx
import pandas as pd
import pytest

from .conftest import tiny_models
from .serving import SERVE, Server, free_port

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(12, seed=41)


def _png(models, k: int = 0) -> bytes:
    data = models[0]
    image_id = pd.read_csv(data / "manifest.csv", dtype={"id": str})["id"][k]
    return (data / "images" / f"{image_id}.png").read_bytes()


def test_a_model_that_does_not_load_stops_the_start_with_one_line(tmp_path):
    proc = subprocess.run(
        [*SERVE, str(tmp_path / "nothing"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nothing" in proc.stderr


def test_health_answers_quickly_while_predictions_run(models, tmp_path):
    server = Server(models[1], tmp_path / "store", "--workers", "1", "--queue", "8")
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            posts = [
                pool.submit(
                    httpx.post, f"{server.url}/v1/predict", files={"file": (f"{k}.png", _png(models, k), "image/png")}, timeout=120
                )
                for k in range(4)
            ]
            times, depths = [], []
            while not all(p.done() for p in posts):
                t0 = time.perf_counter()
                h = httpx.get(f"{server.url}/health", timeout=5).json()
                times.append(time.perf_counter() - t0)
                depths.append(h["queue_depth"])
                time.sleep(0.02)
            assert [p.result().status_code for p in posts] == [200] * 4
        # the probes were answered while radiographs were queued and analysed: the work runs off the event loop.
        # (How fast is a figure for benchmarks/serve_load.py, not a timed test: CI shares its cores.)
        assert sum(d >= 1 for d in depths) >= 2 and max(depths) >= 2, depths
        assert max(times) < 2.0, times
    finally:
        server.stop()


def test_a_client_leaving_mid_upload_leaves_nothing_behind(models, tmp_path):
    server = Server(models[1], tmp_path / "store")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n' + _png(models)[:500]
            s.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 1000000\r\n\r\n" + body
            )
        # the client is gone mid-upload; the server goes on (polled: no fixed wait)
        deadline = time.monotonic() + 30
        while list((tmp_path / "store" / ".staging").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        ok = httpx.post(f"{server.url}/v1/predict", files={"file": ("y.png", _png(models, 1), "image/png")}, timeout=120)
        assert ok.status_code == 200  # the server goes on
        assert [p.name for p in (tmp_path / "store" / "results").iterdir()] == [ok.json()["id"]]
        assert not list((tmp_path / "store" / ".staging").iterdir())
    finally:
        server.stop()


def test_sigterm_lets_requests_in_flight_finish_and_leaves_no_half_result(models, tmp_path):
    server = Server(models[1], tmp_path / "store", "--queue", "8")
    with cf.ThreadPoolExecutor(6) as pool:
        posts = [
            pool.submit(
                httpx.post, f"{server.url}/v1/predict", files={"file": (f"{k}.png", _png(models, k), "image/png")}, timeout=120
            )
            for k in range(6)
        ]
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/health", timeout=5).json()["queue_depth"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        answered = []
        for p in posts:
            try:
                r = p.result()
            except httpx.HTTPError:
                continue  # refused once the server stopped listening: a clean failure
            answered.append(r)
    err = server.stop()
    # uvicorn shuts down gracefully, then re-raises the signal so the parent sees how the process ended
    assert server.proc.returncode == -signal.SIGTERM and "Application shutdown complete" in err, err
    assert answered and all(r.status_code == 200 and r.json()["format"] == "ptxseg-prediction/1" for r in answered)
    stored = {p.name for p in (tmp_path / "store" / "results").iterdir()}
    assert {r.json()["id"] for r in answered} <= stored  # every answer given was kept whole
    assert not list((tmp_path / "store" / ".staging").iterdir())  # nothing half-written
    for rid in stored:
        assert {"result.json", "result_mask.png", "result_overlay.png", "view.png", "view_labels.png"} <= {
            p.name for p in (tmp_path / "store" / "results" / rid).iterdir()
        }
