"""The triage worker: follow Orthanc's change feed, analyse each new CR/DX chest radiograph, store its results.

For every ``NewInstance`` change after the last one finished (:class:`~ptxseg.pacs.state.FeedState`):

1. read the instance's tags; anything but a radiograph of the configured modalities is passed over, and so are
   the objects ptxseg itself stored (they answer to Manufacturer "ptxseg");
2. a lateral or non-chest radiograph (by its header, as the quality gate reads it) is recorded as not triaged,
   with the reason, in the instance's metadata;
3. otherwise the file is analysed (pneumothorax model, lung fields, quantification, QC) and a DICOM SEG, an
   overlay Secondary Capture and a TID 1500 SR are stored in its study — replacing, not adding to, what the
   same model stored for it before (deterministic UIDs) — and the findings are written as its metadata;
4. a file that cannot be analysed is recorded as ``error: <reason>`` and passed over;
5. the change is recorded as finished, atomically.

Each start of a change is recorded durably before the work begins: a radiograph that has been started
``max_attempts`` times without finishing (it killed the worker each time) is recorded as
``error: gave up after N attempts`` and passed over.

A stop request (SIGTERM) is honoured between instances: the one in progress is finished first.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError, one_line, unexpected
from ptxseg.io.names import hashed_uid
from ptxseg.pacs.orthanc import ORTHANC_ID, OrthancClient, OrthancError
from ptxseg.pacs.results import findings
from ptxseg.pacs.state import FeedState
from ptxseg.tasks.dicom_results import derive, header_refusal, inject_fault, passed_over

log = logging.getLogger("ptxseg.triage")

#: the testing hook: ``<point>[@<hashed SOP Instance UID>]`` kills the worker (SIGKILL) at that point
FAULT_ENV = "PTXSEG_TRIAGE_FAULT"
FAULT_POINTS = ("analysis", "between-stores")


class TriageWorker:
    """Analyse what arrives in ``client``'s Orthanc with ``pipeline``; ``state`` says where the feed was left.

    Args:
        modalities: the Modality values analysed (CR and DX by default).
        scratch: a folder for the files of the instance in progress (emptied after each).
        stop: set it to stop after the instance in progress.
        max_attempts: starts of one instance's change before it is given up.
    """

    def __init__(
        self,
        client: OrthancClient,
        pipeline: ClinicalPipeline,
        state: FeedState,
        modalities: list[str] | tuple[str, ...] = ("CR", "DX"),
        scratch: Path | None = None,
        batch: int = 100,
        poll_s: float = 2.0,
        stop: threading.Event | None = None,
        max_attempts: int = 3,
    ) -> None:
        self.client, self.pipeline, self.state = client, pipeline, state
        self.modalities = {m.upper() for m in modalities}
        self.scratch = scratch
        self.batch, self.poll_s = batch, poll_s
        self.stop = stop or threading.Event()
        self.max_attempts = max_attempts
        self.counts: Counter[str] = Counter()

    def run(self, once: bool = False) -> Counter[str]:
        """Process the feed: with ``once`` until nothing is pending, else until :attr:`stop` is set. Returns how
        many instances ended each way (``analysed``, ``not-triaged``, ``error``, ``gave-up``, ``skipped``,
        ``gone``)."""
        while not self.stop.is_set():
            page = self.client.changes(self.state.last_change, self.batch)
            for change in page.get("Changes", []):
                if self.stop.is_set():
                    return self.counts
                if change.get("ChangeType") == "NewInstance" and change.get("ResourceType") == "Instance":
                    starts = self.state.attempt(int(change["Seq"]))  # durably, before any work on it
                    self.counts[self._process_or_gone(str(change["ID"]), starts)] += 1
                    self.state.advance(int(change["Seq"]))  # durably, before the next radiograph
                else:  # series, study, patient changes: nothing to do; recorded with the next write
                    self.state.advance(int(change["Seq"]), persist=False)
            last = max(self.state.last_change, int(page.get("Last", 0)) if not page.get("Changes") else 0)
            self.state.advance(last)  # the page's end (and changes Orthanc no longer lists)
            if page.get("Done", True):
                if once:
                    break
                self.stop.wait(self.poll_s)
        return self.counts

    def _process_or_gone(self, instance: str, starts: int = 1) -> str:
        if not ORTHANC_ID.fullmatch(instance):  # never put an odd id from the feed into a URL
            log.warning("change for %r: not an Orthanc instance id; passed over", instance[:80])
            return "skipped"
        try:
            if starts > self.max_attempts:
                self.client.set_metadata(instance, {"ptxseg-status": f"error: gave up after {starts - 1} attempts"})
                log.warning("instance %s: gave up after %d attempts that did not finish", instance, starts - 1)
                return "gave-up"
            return self.process(instance)
        except OrthancError as exc:
            if exc.status == 404:
                log.info("instance %s: deleted before or while it was analysed", instance)
                return "gone"
            raise

    def process(self, instance: str) -> str:
        """Triage one Orthanc instance; returns its outcome."""
        tags = self.client.tags(instance)
        why_not = passed_over(tags, self.modalities)
        if why_not:
            log.debug("instance %s: passed over (%s)", instance, why_not)
            return "skipped"
        sop = hashed_uid(tags.get("SOPInstanceUID"))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ptxseg-triage-", dir=self.scratch) as tmp:
            folder = Path(tmp)
            path = folder / "source.dcm"
            path.write_bytes(self.client.file(instance))
            try:
                rad = load_radiograph(path)
                reason = header_refusal(rad)
                if reason:
                    self.client.set_metadata(instance, {"ptxseg-status": f"not-triaged: {reason}"})
                    log.info("instance %s (sop %s): not triaged: %s", instance, sop, reason)
                    return "not-triaged"
                inject_fault(FAULT_ENV, "analysis", sop)
                results = derive(self.pipeline, rad, folder)
            except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the PACS's triage
                reason = one_line(exc.reason if isinstance(exc, PtxsegError) else unexpected(exc), 300)
                self.client.set_metadata(instance, {"ptxseg-status": f"error: {reason}"})
                log.warning("instance %s (sop %s): not analysed: %s", instance, sop, reason)
                return "error"
            stored = []
            for path in (results.seg, results.sc, results.sr):
                stored.append(self.client.store(path.read_bytes()))
                inject_fault(FAULT_ENV, "between-stores", sop)  # after the SEG (and the SC): a crash between two stores
            self.client.set_metadata(instance, findings(results.doc))
        doc = results.doc
        log.info(
            "instance %s (sop %s): probability %.3f, severity %s; stored SEG, SC, SR (%s) in %.2f s",
            instance, sop, doc["pneumothorax"]["probability"], doc.get("max_severity"), ", ".join(stored),
            time.perf_counter() - start,
        )  # fmt: skip
        return "analysed"
