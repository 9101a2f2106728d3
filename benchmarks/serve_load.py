"""Load on a running ``ptxseg serve`` (loopback only): requests/s and latency percentiles at several concurrencies,
and an overload that must yield 503s while every accepted request gets exactly one complete answer.

    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 --image IMAGE.png \\
        [--concurrency 1 4 16] [--requests 32] [--seconds 120] [--warmup 2]

Each level sends ``--requests`` uploads of IMAGE from that many concurrent clients (bounded by ``--seconds`` per
level) and counts: 200 answers that are complete (a JSON document whose result URL answers with the same id),
503 (queue full), other statuses, transport errors. Exactly one answer per accepted request is checked twice: the
result ids the clients received are all distinct, and the server's own counts (``/metrics``: predict answers by
status, analyses finished) moved by exactly what the clients saw. It never sends traffic beyond 127.0.0.1 and
stops by itself; its exit status is 1 when a count does not reconcile.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from prometheus_client.parser import text_string_to_metric_families


def server_counts(url: str) -> dict[str, float]:
    """The server's own counters: predict answers by status (``"200"``, ``"503"``, …) and ``analysed`` (radiographs
    whose analysis finished, answered or not)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "ptxseg_requests_total" and sample.labels.get("route") == "/v1/predict":
                out[sample.labels["status"]] = sample.value
            elif sample.name == "ptxseg_inference_seconds_count":
                out["analysed"] = sample.value
    return out


def one(url: str, name: str, data: bytes) -> tuple[str, float, str | None]:
    """POST one upload; returns its outcome (``ok``, ``503``, another status, ``error``), its latency and the result
    id of a 200."""
    t0 = time.perf_counter()
    try:
        r = httpx.post(f"{url}/v1/predict", files={"file": (name, data)}, timeout=120)
    except httpx.HTTPError as exc:
        return f"error:{type(exc).__name__}", time.perf_counter() - t0, None
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        return str(r.status_code), elapsed, None
    doc = r.json()
    again = httpx.get(f"{url}{doc['urls']['result']}", timeout=30)  # the answer is stored whole, under its id
    complete = again.status_code == 200 and again.json().get("id") == doc["id"] and "pneumothorax" in doc
    return ("ok" if complete else "incomplete"), elapsed, doc["id"]


def probe_health(url: str, stop: threading.Event, times: list[float]) -> None:
    """GET /health every 50 ms until ``stop``; appends each answer's latency (s) to ``times``."""
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.get(f"{url}/health").raise_for_status()
            times.append(time.perf_counter() - t0)
            stop.wait(0.05)


def level(url: str, name: str, data: bytes, concurrency: int, requests: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    before = server_counts(url)
    stop, health = threading.Event(), []
    prober = threading.Thread(target=probe_health, args=(url, stop, health), daemon=True)
    prober.start()
    outcomes: list[tuple[str, float, str | None]] = []
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        pending = set()
        sent = 0
        while sent < requests or pending:
            while sent < requests and len(pending) < concurrency and time.monotonic() < deadline:
                pending.add(pool.submit(one, url, name, data))
                sent += 1
            if not pending:
                break
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            outcomes += [f.result() for f in done]
    wall = time.perf_counter() - t0
    stop.set()
    prober.join()
    after = server_counts(url)
    ok = sorted(t for o, t, _ in outcomes if o == "ok")
    ids = [i for o, _, i in outcomes if o == "ok"]
    counts: dict[str, int] = {}
    for o, _, _ in outcomes:
        counts[o] = counts.get(o, 0) + 1
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}

    def pct(q: float) -> float:
        return ok[min(len(ok) - 1, int(round(q * (len(ok) - 1))))] if ok else float("nan")

    return {
        "concurrency": concurrency,
        "sent": len(outcomes),
        "ok_per_s": len(ok) / wall,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(ok) if ok else float("nan"),
        "counts": counts,
        "server_200": moved.get("200", 0),
        "server_503": moved.get("503", 0),
        "analysed": moved.get("analysed", 0),
        "distinct_ids": len(set(ids)),
        "health_p99": sorted(health)[min(len(health) - 1, int(round(0.99 * (len(health) - 1))))] if health else float("nan"),
        "health_max": max(health, default=float("nan")),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32, help="uploads per level")
    ap.add_argument("--seconds", type=float, default=120, help="longest time a level may send for")
    ap.add_argument("--warmup", type=int, default=2, help="uploads sent (one at a time) before measuring, not counted")
    args = ap.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing {args.url}: this benchmark only talks to a server on the loopback interface", file=sys.stderr)
        return 2
    data = args.image.read_bytes()
    health = httpx.get(f"{args.url}/health", timeout=10).json()
    print(f"server: {args.url}, workers {health['workers']}, queue {health['queue_limit']}; image {args.image.name}")
    for _ in range(args.warmup):  # the server's first answers through the HTTP stack are slower: not measured
        one(args.url, args.image.name, data)
    print(
        "| concurrency | sent | complete 200 | 503 | other | answers/s | p50 s | p95 s | p99 s "
        "| server: 200 / 503 / analysed | /health p99 / max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    status = 0
    for c in args.concurrency:
        r = level(args.url, args.image.name, data, c, args.requests, args.seconds)
        ok, busy = r["counts"].get("ok", 0), r["counts"].get("503", 0)
        other = sum(v for k, v in r["counts"].items() if k not in ("ok", "503"))
        print(
            f"| {c} | {r['sent']} | {ok} | {busy} | {other} | {r['ok_per_s']:.2f} "
            f"| {r['p50']:.3f} | {r['p95']:.3f} | {r['p99']:.3f} | {r['server_200']:.0f} / {r['server_503']:.0f} "
            f"/ {r['analysed']:.0f} | {1000 * r['health_p99']:.0f} / {1000 * r['health_max']:.0f} |"
        )
        if other:
            print(f"  other outcomes at concurrency {c}: {r['counts']}")
        # one answer per accepted request: distinct ids, and the server answered and analysed exactly that many
        if not (r["distinct_ids"] == ok == r["server_200"] == r["analysed"] and busy == r["server_503"]):
            print(f"  counts do not reconcile at concurrency {c}: {r}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
