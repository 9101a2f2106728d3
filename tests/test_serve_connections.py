"""Sockets that hold a slot without asking (issue 26): the real ``ptxseg serve`` on loopback keeps answering
/health and /metrics while 200 idle and 70 trickling (slowloris) connections are open, and closes each of them —
and an idle keep-alive connection, and a body that never finishes — by its request deadlines."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from .conftest import tiny_models
from .serving import Server

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers

HEAD_S, BODY_S = 3.0, 6.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tiny_models(12, seed=41)
    srv = Server(
        models[1], tmp_path_factory.mktemp("store"), "--queue", "8", "--head-timeout", str(HEAD_S), "--body-timeout", str(BODY_S)
    )
    yield srv
    srv.stop()


def _connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on our close
    return s


def _closed_by_server(s: socket.socket, within_s: float) -> float | None:
    """Seconds until the server closed ``s`` (EOF or reset), or None if it was still open after ``within_s``."""
    t0 = time.monotonic()
    s.settimeout(within_s)
    try:
        while True:
            if not s.recv(65536):
                return time.monotonic() - t0
    except ConnectionResetError:
        return time.monotonic() - t0
    except TimeoutError:
        return None


def test_idle_and_trickling_sockets_neither_shut_out_health_nor_stay_open(server):
    idle = [_connect(server) for _ in range(200)]
    trickling = [_connect(server) for _ in range(70)]
    stop = threading.Event()

    def trickle() -> None:
        for s in trickling:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            for s in trickling:
                try:
                    s.sendall(b"X-Slow: 1\r\n")  # a header line every 0.3 s, the head never ends
                except OSError:
                    pass
            time.sleep(0.3)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        health = httpx.get(f"{server.url}/health", timeout=10)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10)
        assert health.status_code == 200 and metrics.status_code == 200, (health.status_code, metrics.status_code)
        assert time.monotonic() - t0 < HEAD_S  # answered while all 270 were open, not after they were dropped
        # every one of them is closed by the head deadline (a trickle does not restart it)
        waits = [_closed_by_server(s, HEAD_S + 8) for s in idle + trickling]
        assert all(w is not None for w in waits), sum(w is None for w in waits)
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        stop.set()
        thread.join()
        for s in idle + trickling:
            s.close()


def test_an_idle_keep_alive_connection_and_an_unfinished_body_are_closed(server):
    s = _connect(server)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:40]
    assert _closed_by_server(s, HEAD_S + 8) is not None  # no second request: closed, not held
    s.close()

    s = _connect(server)
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n--b\r\n"
    )
    waited = _closed_by_server(s, BODY_S + 8)
    s.close()
    assert waited is not None and waited >= BODY_S - 1.0, waited  # the body deadline, not the head's
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_deadlines_must_be_positive():
    from ptxseg.serve.connections import protocol_with_deadlines

    assert protocol_with_deadlines(1.0, 2.0).head_timeout_s == 1.0
    with pytest.raises(ValueError, match="positive"):
        protocol_with_deadlines(0, 2.0)
