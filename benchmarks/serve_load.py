"""Load on a running ``ptxseg serve`` (loopback only): requests/s and latency percentiles at several concurrencies,
and an overload that must yield 503s while every accepted request gets exactly one complete answer.

    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 --image IMAGE.png \\
        [--concurrency 1 4 16] [--requests 32] [--seconds 60]

Each level sends ``--requests`` uploads of IMAGE from that many concurrent clients (bounded by ``--seconds`` per
level) and counts: 200 answers that are complete (a JSON document whose result URL answers with the same id),
503 (queue full), other statuses, transport errors. It never sends traffic beyond 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx


def one(url: str, name: str, data: bytes) -> tuple[str, float]:
    """POST one upload; returns its outcome (``ok``, ``503``, another status, ``error``) and its latency."""
    t0 = time.perf_counter()
    try:
        r = httpx.post(f"{url}/v1/predict", files={"file": (name, data)}, timeout=120)
    except httpx.HTTPError as exc:
        return f"error:{type(exc).__name__}", time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        return str(r.status_code), elapsed
    doc = r.json()
    again = httpx.get(f"{url}{doc['urls']['result']}", timeout=30)  # the answer is stored whole, under its id
    complete = again.status_code == 200 and again.json().get("id") == doc["id"] and "pneumothorax" in doc
    return ("ok" if complete else "incomplete"), elapsed


def level(url: str, name: str, data: bytes, concurrency: int, requests: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    outcomes: list[tuple[str, float]] = []
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
    ok = sorted(t for o, t in outcomes if o == "ok")
    counts: dict[str, int] = {}
    for o, _ in outcomes:
        counts[o] = counts.get(o, 0) + 1

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
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32, help="uploads per level")
    ap.add_argument("--seconds", type=float, default=120, help="longest time a level may send for")
    args = ap.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing {args.url}: this benchmark only talks to a server on the loopback interface", file=sys.stderr)
        return 2
    data = args.image.read_bytes()
    health = httpx.get(f"{args.url}/health", timeout=10).json()
    print(f"server: {args.url}, workers {health['workers']}, queue {health['queue_limit']}; image {args.image.name}")
    print("| concurrency | sent | complete 200 | 503 | other | answers/s | p50 s | p95 s | p99 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        r = level(args.url, args.image.name, data, c, args.requests, args.seconds)
        other = sum(v for k, v in r["counts"].items() if k not in ("ok", "503"))
        print(
            f"| {c} | {r['sent']} | {r['counts'].get('ok', 0)} | {r['counts'].get('503', 0)} | {other} | {r['ok_per_s']:.2f} "
            f"| {r['p50']:.3f} | {r['p95']:.3f} | {r['p99']:.3f} |"
        )
        if other:
            print(f"  other outcomes at concurrency {c}: {r['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
