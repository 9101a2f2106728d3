"""``ptxseg triage`` as a library call: connect, load the models, run the worker; SIGTERM stops it cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from os import PathLike
from pathlib import Path
from typing import Any

from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError, service_logger
from ptxseg.pacs.config import TriageSettings, read_credentials
from ptxseg.pacs.orthanc import OrthancClient, OrthancError
from ptxseg.pacs.state import FeedState
from ptxseg.pacs.worker import TriageWorker
from ptxseg.pacs.worklist import worklist

log = logging.getLogger("ptxseg.triage")


def connect(url: str, settings: TriageSettings, credentials_file: str | PathLike[str] | None = None) -> OrthancClient:
    """A client of the Orthanc at ``url`` that answered ``/system`` (a bad URL or credentials: one-line error)."""
    creds = read_credentials(credentials_file if credentials_file is not None else settings.credentials_file)
    try:
        client = OrthancClient(
            url, creds, retry_s=settings.retry_s, max_backoff_s=settings.max_backoff_s, give_up_s=settings.give_up_s
        )
    except ValueError as exc:
        raise PtxsegError("--orthanc", str(exc)) from None
    try:
        system = client.system()
    except OrthancError as exc:
        client.close()
        hint = " (wrong or missing credentials?)" if exc.status == 401 else ""
        raise PtxsegError(url, f"{exc}{hint}") from None
    log.info("Orthanc %s (%s) at %s", system.get("Version"), system.get("Name"), client.url)
    return client


def run_triage(
    url: str,
    model: str | PathLike[str],
    settings: TriageSettings,
    once: bool = False,
    credentials_file: str | PathLike[str] | None = None,
) -> Counter[str]:
    """Follow the Orthanc at ``url`` with ``model`` until stopped (SIGTERM/SIGINT: after the instance in progress)
    or, with ``once``, until nothing is pending. Returns the outcome counts."""
    client = connect(url, settings, credentials_file)
    stop = threading.Event()
    client.stop = stop
    try:
        pipeline = ClinicalPipeline(model, lungs=settings.lungs, threads=settings.threads)
        work = Path(settings.work_dir)
        (work / "scratch").mkdir(parents=True, exist_ok=True)
        state = FeedState.load(work / "state.json", client.url)
        worker = TriageWorker(
            client,
            pipeline,
            state,
            settings.modalities,
            work / "scratch",
            settings.batch,
            settings.poll_s,
            stop,
            settings.max_attempts,
        )
        log.info(
            "model %s (version %s); following changes after #%d%s",
            pipeline.model_info["name"], pipeline.model_info["version"], state.last_change, " once" if once else "",
        )  # fmt: skip
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            counts = worker.run(once=once)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopped after change #%d: %s", state.last_change, dict(counts) or "nothing new")
        return counts
    except OrthancError as exc:
        raise PtxsegError(url, str(exc)) from None
    finally:
        client.close()


def list_worklist(url: str, settings: TriageSettings, credentials_file: str | PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The analysed studies of the Orthanc at ``url`` in triage order (:func:`ptxseg.pacs.worklist.worklist`)."""
    client = connect(url, settings, credentials_file)
    try:
        return worklist(client)
    except OrthancError as exc:
        raise PtxsegError(url, str(exc)) from None
    finally:
        client.close()


def configure_logging(level: str | None = None) -> None:
    """Log the worker's lines to stderr (``PTXSEG_LOG_LEVEL``, default info)."""
    service_logger("ptxseg.triage", level)
