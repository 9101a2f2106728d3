"""``ptxseg listen`` as a library call: open the spool, load the models, listen, analyse and deliver until
SIGTERM/SIGINT (then: no new associations, the film in progress finished, the queue left as it stands)."""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from os import PathLike

from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.errors import PtxsegError, service_logger
from ptxseg.node.config import NodeSettings
from ptxseg.node.queue import NodeQueue
from ptxseg.node.scp import StoreSCP
from ptxseg.node.spool import Spool
from ptxseg.node.worker import NodeWorker, fault

log = logging.getLogger("ptxseg.listen")


class Node:
    """The spool, queue, SCP and worker of one node; :meth:`start` returns once it listens."""

    def __init__(self, model: str | PathLike[str], settings: NodeSettings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.pipeline = ClinicalPipeline(model, lungs=settings.lungs, threads=settings.threads)
        self.queue = NodeQueue(settings.spool)
        self.spool = Spool(settings.spool)  # after the queue: its database counts towards the spool's size
        recovered = self.spool.orphans(self.queue.known)
        for key in recovered:  # written to disk, then a crash before it was queued: the sender may never resend it
            self.queue.receive(key, "(recovered)")
        if recovered:
            log.info("%d received file(s) without a queue entry recovered from the spool", len(recovered))
        self.worker = NodeWorker(settings, self.pipeline, self.spool, self.queue, self.stop_event)
        self.scp = StoreSCP(settings, self.spool, self.queue, on_received=self.worker.arrived.set, fault=fault)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        try:
            self.scp.start()
        except OSError as exc:
            raise PtxsegError(f"{self.settings.host}:{self.settings.port}", f"cannot listen: {exc.strerror or exc}") from None
        for name, target in (("analyse", self.worker.analyse_forever), ("deliver", self.worker.deliver_forever)):
            thread = threading.Thread(target=target, name=f"ptxseg-listen-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        info = self.pipeline.model_info
        log.info(
            "listening as %s on %s:%d; model %s (version %s); %d destination(s): %s",
            self.settings.ae_title, self.settings.host, self.scp.port, info["name"], info["version"],
            len(self.worker.senders), ", ".join(self.worker.senders) or "none (results stay in the spool)",
        )  # fmt: skip

    def stop(self) -> None:
        """No new associations; the film and the send in progress are finished."""
        self.scp.stop()
        self.stop_event.set()
        self.worker.arrived.set()
        self.worker.analysed.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def counts(self) -> dict[str, Counter]:
        return self.queue.counts()


def run_listen(model: str | PathLike[str], settings: NodeSettings) -> dict[str, Counter]:
    """Run a node until SIGTERM/SIGINT; returns the queue's counts at the end."""
    node = Node(model, settings)
    node.start()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: node.stop_event.set())
    try:
        while not node.stop_event.wait(1.0):  # a timed wait: signals are handled between waits
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.stop()
        counts = node.counts()
        node.queue.close()
    log.info("stopped: instances %s; deliveries %s", dict(counts["instances"]), dict(counts["deliveries"]))
    return counts


def configure_logging(level: str | None = None) -> None:
    """Log the node's lines to stderr (``PTXSEG_LOG_LEVEL``, default info)."""
    service_logger("ptxseg.listen", level)
