"""``ptxseg serve``: the clinical pipeline over HTTP, with a web viewer (``docs/serve.md``).

:func:`build_app` loads the models once and returns the ASGI app; :func:`run_server` runs it under uvicorn
until SIGINT/SIGTERM (requests in flight are finished first).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError, one_line, route_warnings
from ptxseg.limits import SERVICE_MAX_PIXELS, SERVICE_MAX_REQUEST_PIXELS
from ptxseg.serve.app import ServeSettings, create_app
from ptxseg.serve.service import InferenceService, PixelLimits
from ptxseg.serve.store import ResultStore

log = logging.getLogger("ptxseg.serve")


@dataclass
class ServeOptions:
    """Everything ``ptxseg serve`` is told (see ``ptxseg serve --help`` for each)."""

    model: Path
    lungs: Path | None | bool = None  # None: MODEL/lungs or the shipped model; False: none
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    queue: int = 8
    timeout_s: float = 60.0
    max_upload_mb: float = 50.0
    store: Path = field(default_factory=lambda: Path("ptxseg-serve"))
    keep_results: int = 1000
    keep_hours: float = 24.0
    token_file: Path | None = None
    threads: int | None = None
    seg: bool = True
    head_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    max_pixels: int = SERVICE_MAX_PIXELS
    max_request_pixels: int = SERVICE_MAX_REQUEST_PIXELS


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (its first line, stripped); refused when missing or empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise PtxsegError(path, f"token file cannot be read ({type(exc).__name__})") from None
    if len(token) < 16:
        raise PtxsegError(path, "the token must be at least 16 characters")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(options: ServeOptions) -> tuple[FastAPI, InferenceService]:
    """Load the models (a model that fails to load raises :class:`PtxsegError`), open the store, return the app."""
    token = read_token(options.token_file) if options.token_file is not None else None
    if options.workers < 1 or options.queue < options.workers:
        raise PtxsegError("--queue", f"must be at least --workers ({options.workers}), got {options.queue}")
    positive = (options.timeout_s, options.max_upload_mb, options.keep_hours, options.head_timeout_s, options.body_timeout_s)
    if min(positive) <= 0 or options.keep_results < 1:
        raise PtxsegError(
            "serve", "--timeout, --max-upload-mb, --keep-results, --keep-hours, --head-timeout and --body-timeout must be positive"
        )
    pipeline = ClinicalPipeline(options.model, lungs=options.lungs, threads=options.threads)
    info, lungs = pipeline.model_info, pipeline.lung_info
    log.info(
        "model %s (%s, %s, version %s); lung fields: %s",
        info["path"], info["name"], info["backend"], info["version"],
        "none" if lungs is None else f"{lungs['path']} (version {lungs['version']})",
    )  # fmt: skip
    store = ResultStore(options.store, options.keep_results, options.keep_hours * 3600)
    # uploads are spooled by the multipart parser: keep them inside the service's own folder, not /tmp
    spool = Path(options.store) / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(spool)
    if options.max_pixels <= 0 or options.max_request_pixels < options.max_pixels:
        raise PtxsegError("--max-request-pixels", f"must be at least --max-pixels ({options.max_pixels:,}), which must be positive")
    limits = PixelLimits(options.max_pixels, options.max_request_pixels)
    service = InferenceService(pipeline, store, options.workers, options.queue, options.timeout_s, options.seg, limits)
    try:
        log.info("warm-up: one synthetic radiograph analysed in %.2f s", service.warm_up())
    except PtxsegError as exc:
        raise PtxsegError(options.model, f"fails on a synthetic radiograph at start-up: {exc.reason}") from exc
    except Exception as exc:  # an ONNX Runtime or PyTorch failure inside the model
        raise PtxsegError(options.model, f"fails on a synthetic radiograph at start-up: {one_line(str(exc), 200)}") from exc
    settings = ServeSettings(max_upload_bytes=int(options.max_upload_mb * 1024 * 1024), token=token)
    return create_app(service, settings), service


def run_server(options: ServeOptions) -> None:
    """Serve until SIGINT/SIGTERM; requests in flight finish (up to the timeout) before the process exits."""
    import uvicorn  # the server only: tests drive the app in-process

    from ptxseg.serve.connections import protocol_with_deadlines

    level = os.environ.get("PTXSEG_LOG_LEVEL", "info").upper()
    if not log.handlers:  # the service's own lines (start-up, one per result), beside uvicorn's
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
    route_warnings(log)  # pydicom's warnings quote UIDs and names: hashed, on our logger
    app, service = build_app(options)
    if not is_loopback(options.host):
        log.warning("listening on %s: reachable from other machines%s", options.host, "" if options.token_file else " WITHOUT a token")
    _raise_open_file_limit()
    # admission is the service's queue (requests analysed or waiting), not uvicorn's socket count; sockets that
    # ask nothing are closed by the request deadlines instead (serve/connections.py)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level=level.lower(),
        timeout_graceful_shutdown=int(options.timeout_s) + 5,
        http=protocol_with_deadlines(options.head_timeout_s, options.body_timeout_s),
        timeout_keep_alive=5,
        limit_concurrency=None,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        service.close()


def _raise_open_file_limit() -> None:
    """Let the process hold as many sockets as the system allows it (the soft limit up to the hard one): idle
    connections are closed by deadline, not by refusing to accept."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        ceiling = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < ceiling:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed: keep the limit
        pass
