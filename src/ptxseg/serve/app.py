"""``ptxseg serve``'s HTTP API and web viewer (FastAPI).

Routes: ``POST /v1/predict`` (multipart ``file``, one or several), ``GET /v1/results/{id}`` and its files,
``GET /health``, ``/version``, ``/metrics`` (Prometheus), ``/docs`` (OpenAPI), and ``GET /`` — the viewer.
Limits are answered with their status codes: an upload over the maximum 413, not a radiograph 415, unreadable
422, a full queue 503 with ``Retry-After``, an answer slower than the timeout 504, an unknown or evicted result
404, a missing or wrong bearer token 401.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ptxseg.serve.metrics import ServiceMetrics
from ptxseg.serve.service import STEM, Answer, Busy, InferenceService, Rejected, TooLarge
from ptxseg.serve.store import is_result_id

STATIC = Path(__file__).resolve().parent / "static"
#: result files a client may fetch: URL name → (stored file name, media type)
RESULT_FILES = {
    "overlay.png": (f"{STEM}_overlay.png", "image/png"),
    "mask.png": (f"{STEM}_mask.png", "image/png"),
    "seg.dcm": (f"{STEM}_seg.dcm", "application/dicom"),
    "view.png": ("view.png", "image/png"),
    "view_labels.png": ("view_labels.png", "image/png"),
}
#: paths answered without the bearer token: the health probe, and the viewer's static page and assets (they hold
#: no data; the page asks for the token and sends it with every API call)
OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


@dataclass
class ServeSettings:
    """HTTP-side settings of the service (the inference side is :class:`InferenceService`'s)."""

    max_upload_bytes: int = 50 * 1024 * 1024
    token: str | None = None
    retry_after_s: int = 5


def route_label(path: str) -> str:
    """The metrics label of a request path (result ids folded, so labels stay few)."""
    if path.startswith("/v1/results/"):
        rest = path[len("/v1/results/") :].split("/", 1)
        return "/v1/results/{id}" + (f"/{rest[1]}" if len(rest) > 1 and rest[1] in RESULT_FILES else "")
    if path.startswith("/static/"):
        return "/static"
    return path if path in ("/", "/health", "/version", "/metrics", "/v1/predict", "/docs", "/openapi.json") else "other"


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Guard:
    """Pure ASGI middleware in front of the app: the bearer token, the upload limit (413 before the body is
    parsed: from ``Content-Length``, else by counting while reading), and the request metrics.

    A client that disconnects before its upload is complete is dropped here: nothing reaches the app, nothing
    is written.
    """

    def __init__(self, app, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        label = route_label(scope["path"])
        status_seen = {"code": 500}

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status_seen["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(label, str(status_seen["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)

    async def _handle(self, scope, receive, send) -> None:
        path = scope["path"]
        token = self.settings.token
        if token and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
                await _problem(401, "a bearer token is required (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})(
                    scope, receive, send
                )
                return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_upload_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = _problem(413, f"upload larger than the maximum of {limit / 1e6:g} MB")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left mid-upload: nothing to answer, nothing written
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


def _urls(result_id: str, doc: dict) -> dict[str, str | None]:
    base = f"/v1/results/{result_id}"
    out = {"result": base, "overlay": f"{base}/overlay.png", "mask": f"{base}/mask.png"}
    out["seg"] = f"{base}/seg.dcm" if doc["outputs"].get("seg") else None
    return out


def _answer_body(answer: Answer) -> dict[str, Any]:
    return {**answer.doc, "id": answer.id, "urls": _urls(answer.id, answer.doc)}


def _prediction_routes(service: InferenceService, settings: ServeSettings, metrics: ServiceMetrics) -> APIRouter:
    """``POST /v1/predict``: one radiograph → its document; several → one row each; 413/503/504 for the request."""
    router = APIRouter()

    @router.post("/v1/predict", summary="Analyse one or several radiographs (DICOM, PNG, JPEG)")
    async def predict(file: Annotated[list[UploadFile], File(description="The radiograph(s); repeat the field for several.")]):
        uploads = [(f.filename or "upload", await f.read()) for f in file]
        try:
            answers = await service.analyse(uploads)
        except TooLarge as exc:
            return _problem(413, f"{exc}: send them in several requests")
        except Busy:
            metrics.rejected.inc()
            return _problem(
                503, f"busy: {service.queue} radiographs are queued; try again later", {"Retry-After": str(settings.retry_after_s)}
            )
        except TimeoutError:
            return _problem(504, f"no answer within {service.timeout_s:g} s")
        if len(answers) == 1:
            only = answers[0]
            if isinstance(only, Rejected):
                return _problem(only.status, only.reason)
            return _answer_body(only)
        results = [
            {"file": name, "status": a.status, "detail": a.reason}
            if isinstance(a, Rejected)
            else {"file": name, "status": 200, **_answer_body(a)}
            for (name, _), a in zip(uploads, answers, strict=True)
        ]
        return {"results": results}

    return router


def _result_routes(service: InferenceService) -> APIRouter:
    """``GET /v1/results/{id}`` and its files, from the result store (404 once evicted)."""
    router = APIRouter()

    @router.get("/v1/results/{result_id}", summary="A stored result's JSON document")
    def result(result_id: str):
        path = service.store.file(result_id, f"{STEM}.json")
        if path is None:
            raise HTTPException(404, "no such result (unknown, or evicted from the result store)")
        doc = json.loads(path.read_text())
        return {**doc, "id": result_id, "urls": _urls(result_id, doc)}

    @router.get("/v1/results/{result_id}/{name}", summary="A stored result's file: overlay.png, mask.png, seg.dcm")
    def result_file(result_id: str, name: str):
        if name not in RESULT_FILES or not is_result_id(result_id):
            raise HTTPException(404, "no such result file")
        stored, media = RESULT_FILES[name]
        path = service.store.file(result_id, stored)
        if path is None:
            raise HTTPException(404, "no such result file (unknown or evicted result, or no SEG for a non-DICOM input)")
        return FileResponse(path, media_type=media, filename=f"{result_id}_{name}")

    return router


def _status_routes(service: InferenceService, metrics: ServiceMetrics) -> APIRouter:
    """``/health``, ``/version``, ``/metrics`` and the viewer page."""
    router = APIRouter()
    pipeline = service.pipeline

    @router.get("/health", summary="Liveness: model loaded, queue depth")
    async def health():  # on the event loop itself: no hop through the thread pool that sync routes use
        return {
            "status": "ok",
            "model_loaded": True,
            "queue_depth": service.depth,
            "queue_limit": service.queue,
            "workers": service.workers,
        }

    @router.get("/version", summary="Software and model versions, model card")
    def version_info():
        return {
            "ptxseg": package_version("ptxseg"),
            "model": pipeline.model_info,
            "lung_model": pipeline.lung_info,
            "model_warnings": list(pipeline.warnings),
            "operating_point": pipeline.op.to_dict(),
            "model_card": json.loads(pipeline.ptx.card.model_dump_json()),
        }

    @router.get("/metrics", summary="Prometheus metrics")
    def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def viewer():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    return router


def create_app(service: InferenceService, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app answering for ``service`` (models loaded, store open)."""
    settings = settings or ServeSettings()
    metrics = ServiceMetrics(lambda: service.depth)
    service.on_inference = metrics.inference.observe
    app = FastAPI(
        title="ptxseg",
        version=package_version("ptxseg"),
        summary="Pneumothorax triage on chest radiographs: outline, side, share of the lung, severity, quality. Not a medical device.",
    )
    app.include_router(_prediction_routes(service, settings, metrics))
    app.include_router(_result_routes(service))
    app.include_router(_status_routes(service, metrics))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, settings=settings, metrics=metrics)
    return app
