"""The node's two loops: analysing what arrived (one film at a time, each start counted durably) and delivering
the results to every destination (each object and destination on its own, retried with backoff).

A film that is not a CR/DX frontal chest radiograph is recorded as ``not-triaged`` with the reason, as
``ptxseg triage`` does; one that cannot be analysed is ``error: <reason>``; one whose analysis was started
``max_attempts`` times without finishing (it killed the node) is ``failed``. None of them is sent anywhere.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pydicom

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError, one_line, reading, unexpected
from ptxseg.node.config import NodeSettings
from ptxseg.node.destinations import DeliveryError, reason, sender
from ptxseg.node.queue import NodeQueue
from ptxseg.node.spool import Spool
from ptxseg.tasks.dicom_results import derive, header_refusal, inject_fault, passed_over

log = logging.getLogger("ptxseg.listen")
FAULT_ENV = "PTXSEG_LISTEN_FAULT"
FAULT_POINTS = ("received", "analysis", "between-sends")


def fault(point: str, key: str) -> None:
    """The crash tests' hook: SIGKILL at ``point`` when ``PTXSEG_LISTEN_FAULT`` names it (``point[@key]``)."""
    inject_fault(FAULT_ENV, point, key)


class NodeWorker:
    """Analyses the queue's instances with ``pipeline`` and delivers their results, until ``stop`` is set."""

    def __init__(
        self, settings: NodeSettings, pipeline: ClinicalPipeline, spool: Spool, queue: NodeQueue, stop: threading.Event
    ) -> None:
        self.settings, self.pipeline, self.spool, self.queue, self.stop = settings, pipeline, spool, queue, stop
        self.arrived = threading.Event()  # set by the SCP after each new instance
        self.analysed = threading.Event()
        self.senders = {d.name: sender(d, settings.ae_title, settings.network_timeout_s) for d in settings.destinations}
        (spool.root / "scratch").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ analysing

    def analyse_forever(self) -> None:
        while not self.stop.is_set():
            item = self.queue.next_to_analyse()
            if item is None:
                self.arrived.wait(1.0)
                self.arrived.clear()
                continue
            self.analyse(*item)

    def analyse(self, key: str, starts: int) -> str:
        """Analyse the received instance ``key`` (this is its ``starts``-th start); returns its status."""
        short = key[:12]
        if starts > self.settings.max_attempts:
            return self._finish(key, "failed", f"gave up after {starts - 1} attempts that did not finish")
        path = self.spool.source(key)
        try:
            with reading(path, "DICOM"):
                header = pydicom.dcmread(path, stop_before_pixels=True)
            why = passed_over(header, self.settings.modalities)
            if why:
                return self._finish(key, "not-triaged", why)
            rad = load_radiograph(path)
            why = header_refusal(rad)
            if why:
                return self._finish(key, "not-triaged", why)
            fault("analysis", key)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="analysis-", dir=self.spool.root / "scratch") as tmp:
                results = derive(self.pipeline, rad, Path(tmp))
                self.spool.store_results(key, {"seg": results.seg, "sc": results.sc, "sr": results.sr})
        except Exception as exc:  # noqa: BLE001 - one bad film must not stop the node
            why = one_line(exc.reason if isinstance(exc, PtxsegError) else unexpected(exc), 300)
            return self._finish(key, "error", why)
        doc = results.doc
        self.queue.finish(key, "analysed", destinations=list(self.senders))
        log.info(
            "instance %s: probability %.3f, severity %s; SEG, SC, SR queued for %d destination(s) in %.2f s",
            short, doc["pneumothorax"]["probability"], doc.get("max_severity"), len(self.senders), time.perf_counter() - start,
        )  # fmt: skip
        self.analysed.set()
        return "analysed"

    def _finish(self, key: str, status: str, why: str) -> str:
        self.queue.finish(key, status, why)
        log.info("instance %s: %s: %s", key[:12], status, why)
        if not self.settings.keep_files:
            self.spool.discard(key)  # nothing to send: the film need not stay
        return status

    # ------------------------------------------------------------------ delivering

    def deliver_forever(self) -> None:
        while not self.stop.is_set():
            if not self.deliver_due():
                self.analysed.wait(0.5)
                self.analysed.clear()

    def deliver_due(self) -> int:
        """Send every delivery whose time has come; returns how many were tried."""
        due = self.queue.due()
        by_dest: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for key, dest, obj, tries in due:
            by_dest[dest].append((key, obj, tries))
        for dest, items in by_dest.items():
            if self.stop.is_set():
                break
            self._send(dest, items)
        return len(due)

    def _wait(self, tries: int) -> float:
        s = self.settings
        return min(s.retry_s * 2**tries, s.max_backoff_s)

    def _send(self, dest: str, items: list[tuple[str, str, int]]) -> None:
        target = self.senders.get(dest)
        if target is None:  # a destination removed from the settings: its deliveries wait for it to come back
            self.queue.hold_destination(dest, time.time() + self.settings.max_backoff_s)
            return
        paths = [self.spool.result(key, obj) for key, obj, _ in items]
        done = set()

        def on_sent(i: int, error: DeliveryError | None) -> None:
            key, obj, tries = items[i]
            if error is None:
                self.queue.delivered(key, dest, obj)
                done.add(key)
                fault("between-sends", key)  # this object acknowledged and recorded, the next not yet sent
            else:
                self.queue.retry_later(key, dest, obj, reason(error), self._wait(tries))
                log.warning("instance %s: %s not delivered to %s: %s", key[:12], obj.upper(), dest, reason(error))

        try:
            target.send_all(paths, on_sent)
        except Exception as exc:  # noqa: BLE001 - a destination that is down: retry later, the node goes on
            wait = self._wait(min(t for _, _, t in items))
            for key, obj, tries in items:
                if key not in done:
                    self.queue.retry_later(key, dest, obj, reason(exc), self._wait(tries))
            self.queue.hold_destination(dest, time.time() + wait)
            log.warning("destination %s: %s; retrying in %.0f s", dest, reason(exc), wait)
        if not self.settings.keep_files:
            for key in done:
                if self.queue.settled(key):
                    self.spool.discard(key)
