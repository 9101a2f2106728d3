"""Prometheus metrics of the service (``GET /metrics``), in a registry of its own per app."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: request latency buckets, seconds: a CPU answer is ~0.1–2 s, a queued one longer
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """Request counts by route and status, request latency, queue depth, model inference time."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ptxseg_requests", "HTTP requests answered, by route and status code", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ptxseg_request_seconds", "Time to answer a request, by route", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.inference = Histogram(
            "ptxseg_inference_seconds",
            "Time to analyse one radiograph (models, quantification, files), queueing excluded",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge("ptxseg_queue_depth", "Radiographs admitted and not yet answered", registry=self.registry)
        self.queue.set_function(lambda: float(depth()))
        self.rejected = Counter(
            "ptxseg_busy_rejections", "Requests refused with 503 because the queue was full", registry=self.registry
        )
