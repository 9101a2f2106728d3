"""The node's listening side (pynetdicom): C-ECHO and C-STORE SCP.

An association is refused before any data flows when the caller is not expected — a calling AE title outside
``allow_aet`` (permanent rejection, "calling AE title not recognised"), a peer address outside ``allow_hosts``,
or any non-loopback peer when no ``allow_aet`` is set — and, transiently ("temporary congestion"), when the
spool is full, or ``max_associations`` associations are already open ("local limit exceeded"). Only connections
that sent an association request count towards that limit: a connection that sends nothing (an idle or trickling
client) is closed after ``request_timeout_s`` (pynetdicom's ARTIM timer) and never locks out a real sender;
``max_connections`` bounds the connections (and threads) at all.

A C-STORE is acknowledged (0x0000) only after the instance is flushed to the spool and recorded in the queue;
an instance already received is acknowledged again and not stored twice; a full spool answers 0xA700 (out of
resources), so the sender keeps its copy.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import Verification

from ptxseg.errors import one_line, unexpected
from ptxseg.io.names import hashed_uid
from ptxseg.node.config import NodeSettings
from ptxseg.node.queue import NodeQueue
from ptxseg.node.spool import Spool, instance_key

log = logging.getLogger("ptxseg.listen")

#: the transfer syntaxes the reader decodes (pydicom + the pylibjpeg plugins)
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_CALLER = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
REJECT_PEER = (0x01, 0x01, 0x01)  # permanent, service user, no reason given
REJECT_FULL = (0x02, 0x03, 0x01)  # transient, presentation, temporary congestion
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient, presentation, local limit exceeded


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class StoreSCP:
    """The C-STORE/C-ECHO service of ``settings`` writing into ``spool`` and ``queue``; ``on_received`` is called
    after each new instance (the worker wakes up); ``fault(point, key)`` is the crash tests' hook."""

    def __init__(
        self,
        settings: NodeSettings,
        spool: Spool,
        queue: NodeQueue,
        on_received: Callable[[], None] = lambda: None,
        fault: Callable[[str, str], None] = lambda point, key: None,
    ) -> None:
        self.settings, self.spool, self.queue = settings, spool, queue
        self.on_received, self.fault = on_received, fault
        self.limit = int(settings.max_spool_mb * 1024 * 1024)
        ae = AE(ae_title=settings.ae_title)
        ae.maximum_associations = settings.max_connections  # pynetdicom counts every connection, requested or not
        ae.maximum_pdu_size = settings.max_pdu
        ae.network_timeout = ae.dimse_timeout = settings.network_timeout_s
        ae.acse_timeout = settings.request_timeout_s  # ARTIM: the deadline for a connection's association request
        ae.require_called_aet = True  # a router that addresses another AE reached the wrong node
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.ae = ae
        self.server = None
        self._requested_by: set = set()  # associations that sent a request and were let in, until their connection closes
        self._waiting: dict = {}  # connections that have not sent a whole request yet → when they opened
        self._count_lock = threading.Lock()
        self._sweeping = threading.Event()

    def start(self) -> None:
        """Listen on ``settings.host:settings.port`` (returns at once; the server runs in its own threads)."""
        handlers = [
            (evt.EVT_CONN_OPEN, self._opened),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_CONN_CLOSE, self._closed),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_C_ECHO, lambda e: SUCCESS),
        ]
        self.server = self.ae.start_server((self.settings.host, self.settings.port), block=False, evt_handlers=handlers)
        threading.Thread(target=self._sweep, name="ptxseg-listen-deadline", daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server is not None else self.settings.port

    def stop(self) -> None:
        self._sweeping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def refusal(self, calling_aet: str, address: str) -> tuple[tuple[int, int, int], str] | None:
        """Why an association from ``calling_aet`` at ``address`` is refused, or None to let it negotiate."""
        s = self.settings
        if s.allow_aet and calling_aet not in s.allow_aet:
            return REJECT_CALLER, "calling AE title not on the allow list"
        if s.allow_hosts and address not in s.allow_hosts:
            return REJECT_PEER, "peer address not on the allow list"
        if not s.allow_aet and not s.allow_hosts and not _loopback(address):
            return REJECT_PEER, "no allow list: only loopback callers are accepted"
        if self.spool.bytes >= self.limit:
            return REJECT_FULL, f"spool full ({self.spool.bytes / 2**20:.0f} MB of {s.max_spool_mb:g} MB)"
        if len(self._requested_by) >= s.max_associations:
            return REJECT_BUSY, f"{s.max_associations} associations already open"
        return None

    def _requested(self, event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title.strip()
        address = str(assoc.requestor.address)
        with self._count_lock:
            self._waiting.pop(assoc, None)
            refused = self.refusal(calling, address)
            if refused is None:
                self._requested_by.add(assoc)
        if refused is not None:
            rsd, why = refused
            log.warning("association from %r at %s refused: %s", one_line(calling, 40), address, why)
            assoc.acse.send_reject(*rsd)
            assoc.kill()  # as pynetdicom's own rejections: waits until the A-ASSOCIATE-RJ has left

    def _opened(self, event) -> None:
        with self._count_lock:
            self._waiting[event.assoc] = time.monotonic()

    def _closed(self, event) -> None:
        with self._count_lock:
            self._requested_by.discard(event.assoc)
            self._waiting.pop(event.assoc, None)

    def _sweep(self) -> None:
        """Close connections that have not sent a whole association request within ``request_timeout_s``:
        pynetdicom's ARTIM timer closes a silent one, but one that sent part of a PDU and stalls (a trickle)
        would hold its thread forever, and ``max_connections`` of them would shut every sender out."""
        while not self._sweeping.wait(1.0):
            deadline = time.monotonic() - self.settings.request_timeout_s
            with self._count_lock:
                late = [a for a, t in self._waiting.items() if t < deadline]
                for assoc in late:
                    del self._waiting[assoc]
            for assoc in late:
                log.warning(
                    "connection from %s closed: no association request within %g s",
                    assoc.requestor.address,
                    self.settings.request_timeout_s,
                )
                sock = assoc.dul.socket
                if sock is not None:
                    sock.close()

    def _store(self, event) -> int:
        try:
            uid = str(event.request.AffectedSOPInstanceUID or "")
            if not uid:
                return CANNOT_UNDERSTAND
            key = instance_key(uid)
            if self.queue.known(key):
                log.info("instance %s received again: acknowledged, not analysed twice", hashed_uid(uid))
                return SUCCESS
            data = event.encoded_dataset(include_meta=True)
            if self.spool.bytes + len(data) > self.limit:
                log.warning("instance %s refused: the spool is full", hashed_uid(uid))
                return OUT_OF_RESOURCES
            self.spool.store_source(key, data)
            self.fault("received", key)  # written, not yet queued nor acknowledged
            calling = one_line(event.assoc.requestor.ae_title.strip(), 16)
            self.queue.receive(key, calling)
            log.info("instance %s received from %r (%d bytes)", hashed_uid(uid), calling, len(data))
        except Exception as exc:  # noqa: BLE001 - a failed store is a refusal to the sender, never a lost instance
            log.error("C-STORE failed: %s", unexpected(exc))
            return OUT_OF_RESOURCES
        self.on_received()
        return SUCCESS
