"""The service's inference side: the models loaded once, a bounded queue, a pool of threads off the event loop.

A request is *admitted* when fewer than ``queue`` radiographs are waiting or running; otherwise it is turned
away at once (the HTTP layer answers 503 with ``Retry-After``) — the queue never grows without bound and a
request never waits forever. Admitted work runs in ``workers`` threads sharing one :class:`ClinicalPipeline`
(PyTorch and ONNX Runtime release the GIL while they compute, so the event loop keeps answering, e.g.
``/health``). Each result is written to the store's staging folder and published in one rename.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.pipeline import Analysis, ClinicalPipeline
from ptxseg.errors import PtxsegError, one_line, unexpected
from ptxseg.io.dicom import write_dicom
from ptxseg.io.headers import declared_pixels, inflated_size_exceeds
from ptxseg.io.images import raster_kind, write_png
from ptxseg.io.names import hashed_uid
from ptxseg.limits import SERVICE_MAX_PIXELS, SERVICE_MAX_REQUEST_PIXELS, pixel_limit
from ptxseg.serve.store import ResultStore
from ptxseg.tasks.predict import write_outputs

log = logging.getLogger("ptxseg.serve")

#: the stem of every file of a result (``result.json``, ``result_mask.png`` …)
STEM = "result"
#: longest side of the picture and label map the web viewer draws (the downloads keep the input's full size)
VIEW_SIDE = 1024
#: label bits of ``view_labels.png``
PNEUMOTHORAX, RIGHT_LUNG, LEFT_LUNG = 1, 2, 4

#: bytes a deflated DICOM may inflate to beyond 8 per declared pixel (its header, overlays, private data)
INFLATE_SLACK = 16 << 20

#: what the service accepts: DICOM Part 10 files (``DICM`` at byte 128) and these raster formats
RASTER_FORMATS = ("PNG", "JPEG")


def is_accepted_upload(data: bytes) -> bool:
    """Whether an upload is a DICOM, PNG or JPEG file, judged by its bytes alone (never by its name)."""
    return data[128:132] == b"DICM" or raster_kind(data[:8]) in RASTER_FORMATS


class Busy(Exception):
    """The queue is full: come back later."""


class TooLarge(Exception):
    """A request that can never be admitted — more radiographs than the queue holds, more pixels than the
    request budget: coming back later will not help."""


@dataclass(frozen=True)
class PixelLimits:
    """What one upload and one request may make the service decode (pixels), and the longest side a large
    PNG/JPEG is decoded at (``decode_side``: at 1/2, 1/4 or 1/8 while its longest side stays at least this)."""

    per_file: int = SERVICE_MAX_PIXELS
    per_request: int = SERVICE_MAX_REQUEST_PIXELS
    decode_side: int | None = 2048

    def __post_init__(self) -> None:
        if self.per_file <= 0 or self.per_request <= 0 or (self.decode_side is not None and self.decode_side < 64):
            raise ValueError("pixel limits must be positive and the decoding side at least 64")


class Rejected(Exception):
    """The upload is not a radiograph ptxseg can read; ``status`` is the HTTP status (415 or 422)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Answer:
    """One analysed upload: its result id and document (with ``outputs`` naming the stored files)."""

    id: str
    doc: dict[str, Any]
    seconds: float


class InferenceService:
    """Analyse uploads with ``pipeline`` into ``store``, at most ``queue`` at a time, ``workers`` in parallel.

    Args:
        pipeline: the loaded clinical pipeline (pneumothorax model, lung fields, quantification, QC).
        store: where results are published.
        workers: inference threads.
        queue: radiographs admitted at once (waiting + running); more are refused (:class:`Busy`).
        timeout_s: a request waits at most this long for its answer (its thread finishes and its result is dropped).
        seg: also write a DICOM SEG for DICOM uploads.
        limits: pixels per file and per request, and the side large PNG/JPEG uploads are decoded at.
    """

    def __init__(
        self,
        pipeline: ClinicalPipeline,
        store: ResultStore,
        workers: int = 1,
        queue: int = 8,
        timeout_s: float = 60.0,
        seg: bool = True,
        limits: PixelLimits | None = None,
    ) -> None:
        if workers < 1 or queue < workers or timeout_s <= 0:
            raise ValueError("the service needs workers >= 1, queue >= workers and a positive timeout")
        self.pipeline, self.store = pipeline, store
        self.workers, self.queue, self.timeout_s, self.seg = workers, queue, timeout_s, seg
        self.limits = limits or PixelLimits()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ptxseg-infer")
        self._lock = threading.Lock()
        self._admitted = 0
        self.on_inference = None  # callable(seconds) for the metrics

    def warm_up(self) -> float:
        """Analyse one synthetic DICOM radiograph end to end (models, quantification, overlay, SEG) in a
        temporary folder and return the seconds it took. Run at start-up so that the first patient does not
        pay for lazy imports and allocations, and so that a pipeline that cannot answer stops the start.

        Raises:
            PtxsegError: the pipeline failed on it (e.g. a non-finite probability map)."""
        start = time.perf_counter()
        rows, cols = np.mgrid[0:512, 0:512] / 511.0
        # a smooth, chest-sized gradient: every stage runs, nothing about it resembles a patient
        pixels = (1000 + 2000 * (0.5 * rows + 0.5 * np.abs(cols - 0.5))).astype(np.uint16)
        # under staging: a server killed here leaves nothing the next start does not clear
        with tempfile.TemporaryDirectory(prefix="warm-up-", dir=self.store.staging) as tmp:
            path = write_dicom(Path(tmp) / "warm-up.dcm", pixels, pixel_spacing=(0.7, 0.7))
            rad = load_radiograph(path)
            write_outputs(self.pipeline, rad, STEM, Path(tmp), seg=self.seg, overlay=True)
        return time.perf_counter() - start

    @property
    def depth(self) -> int:
        """Radiographs admitted and not yet answered (waiting + running)."""
        return self._admitted

    def _admit(self, n: int) -> None:
        with self._lock:
            if self._admitted + n > self.queue:
                raise Busy
            self._admitted += n

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def analyse(self, uploads: list[tuple[str, bytes]]) -> list[Answer | Rejected]:
        """Analyse every ``(file name, bytes)`` upload; one answer or rejection per upload, in order.

        Raises:
            TooLarge: more uploads than the queue holds at all, or more pixels declared than the request budget
                (nothing was started).
            Busy: the queue cannot take them all now (nothing was started).
            TimeoutError: no complete answer within ``timeout_s`` (the work goes on in its threads and its
                results are dropped instead of published).
        """
        if len(uploads) > self.queue:
            raise TooLarge(f"{len(uploads)} radiographs in one request; this service takes at most {self.queue} at once")
        if len(uploads) > 1:  # one file is held to the per-file limit, with its own reason
            pixels = sum(declared_pixels(data) for _, data in uploads)
            if pixels > self.limits.per_request:
                raise TooLarge(
                    f"the files declare {pixels:,} pixels together, more than the {self.limits.per_request:,} one request may"
                )
        self._admit(len(uploads))
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()
        futures = [loop.run_in_executor(self._pool, self._guarded, name, data, abandoned) for name, data in uploads]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s))
        except TimeoutError:
            abandoned.set()  # nobody will read these results: the threads drop them
            raise

    def _guarded(self, name: str, data: bytes, abandoned: threading.Event) -> Answer | Rejected:
        try:
            return self._analyse_one(name, data, abandoned)
        except Exception as exc:  # noqa: BLE001 - one upload's failure is its own answer, not the request's
            log.error("upload failed: %s", unexpected(exc))  # the type and place only: messages may quote headers
            return Rejected(500, f"{_shown(name)}: the analysis failed ({type(exc).__name__}); the error is logged")
        finally:
            self._release()

    def _analyse_one(self, name: str, data: bytes, abandoned: threading.Event) -> Answer | Rejected:
        start = time.perf_counter()
        if not is_accepted_upload(data):
            return Rejected(415, f"{_shown(name)}: not a DICOM, PNG or JPEG file")
        refused = self._refused_by_header(data)
        if refused:
            return Rejected(413, f"{_shown(name)}: {refused}")
        result_id = self.store.new_id()
        folder = self.store.stage(result_id)
        try:
            upload = folder / "upload"  # the reader tells DICOM from PNG/JPEG by the bytes
            upload.write_bytes(data)
            try:
                with pixel_limit(self.limits.per_file):  # this thread's reads only: refused from the header
                    rad = load_radiograph(upload, reduce_to=self.limits.decode_side)
            except PtxsegError as exc:
                status = 413 if exc.code == "too_large" else 422
                return _reject(self.store, result_id, status, f"{_shown(name)}: {exc.reason}")
            rad.id, rad.path = result_id, Path(_shown(name))  # the answer names the upload, not the staging file
            try:
                doc, analysis = write_outputs(self.pipeline, rad, STEM, folder, seg=self.seg and rad.dataset is not None, overlay=True)
            except PtxsegError as exc:  # e.g. a non-finite probability map: an error, never a negative finding
                return _reject(self.store, result_id, 422, f"{_shown(name)}: {exc.reason}")
            upload.unlink()  # the service keeps its answer, not the patient's file
            _write_view(folder, rad.image, analysis)
            if abandoned.is_set():
                return _reject(self.store, result_id, 504, f"{_shown(name)}: answered after the request timed out")
            self.store.commit(result_id)
        except BaseException:
            self.store.discard(result_id)
            raise
        seconds = time.perf_counter() - start
        if self.on_inference is not None:
            self.on_inference(seconds)
        log.info(
            "result %s: sop %s, present=%s, severity=%s, %.2f s",
            result_id,
            hashed_uid(doc["input"].get("SOPInstanceUID")),
            doc["pneumothorax"]["present"],
            doc["max_severity"],
            seconds,
        )
        return Answer(result_id, doc, seconds)

    def _refused_by_header(self, data: bytes) -> str | None:
        """Why an upload is too large, judged from its header alone — more pixels than the per-file limit, or a
        deflated DICOM inflating to more than its image needs (an 8 MB upload can inflate to gigabytes) — or None."""
        declared = declared_pixels(data)
        if declared > self.limits.per_file:
            limit = f"{self.limits.per_file:,}-pixel limit (the service's --max-pixels)"
            return f"the header declares {declared:,} pixels, more than the {limit}"
        try:
            bomb = inflated_size_exceeds(data, 8 * declared + INFLATE_SLACK)
        except Exception:  # noqa: BLE001 - a broken header or stream: the reader refuses it with its reason
            bomb = False
        return "the deflated dataset inflates to far more than its image needs" if bomb else None

    def close(self) -> None:
        """Finish the work in progress, then stop the threads."""
        self._pool.shutdown(wait=True)


def _reject(store: ResultStore, result_id: str, status: int, reason: str) -> Rejected:
    store.discard(result_id)
    return Rejected(status, reason)


def _shown(name: str) -> str:
    """An uploaded file's name as it may appear in an answer: its last part, one line, at most 100 characters."""
    return one_line(Path(str(name or "upload").replace("\\", "/")).name or "upload", 100)


def _write_view(folder: Path, image: np.ndarray, analysis: Analysis) -> None:
    """``view.png`` (the radiograph, 8-bit, longest side ≤ :data:`VIEW_SIDE`) and ``view_labels.png`` (same size:
    bit 1 pneumothorax, 2 right lung, 4 left lung) — what the web viewer draws and outlines."""
    h, w = image.shape
    scale = min(1.0, VIEW_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    view = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    labels = np.zeros(image.shape, np.uint8)
    labels[analysis.mask] |= PNEUMOTHORAX
    if analysis.lungs is not None and analysis.lungs.found:
        labels[analysis.lungs.right] |= RIGHT_LUNG
        labels[analysis.lungs.left] |= LEFT_LUNG
    if scale < 1:
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    write_png(folder / "view.png", np.clip(np.round(view * 255), 0, 255).astype(np.uint8))
    write_png(folder / "view_labels.png", labels)
