"""Deadlines on what a client sends: uvicorn's h11 protocol, closing connections that hold a slot without asking.

Uvicorn (0.54) has no timeout on receiving a request: its keep-alive timer runs only *between* requests and is
reset by every byte, and its ``limit_concurrency`` counts open sockets, so 64 connections that never send a
request (or trickle one header line a second, slowloris) shut everyone out, ``/health`` included. This protocol
adds the two deadlines a careful front-end proxy would enforce:

- the request *head* (request line and headers) must be complete within ``head_timeout_s`` of the connection
  opening or of the previous response finishing (an idle keep-alive connection therefore closes too);
- the request *body* must be complete within ``body_timeout_s`` of its head.

A connection past either deadline is closed; nothing it sent reaches the app. Once a request is fully received
no deadline runs, so a slow analysis is governed by the service's own timeout, not by these.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("ptxseg.serve")


class DeadlineH11Protocol(H11Protocol):
    """:class:`H11Protocol` with request-receipt deadlines (class attributes; see :func:`protocol_with_deadlines`)."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    #: connections closed for a late head or body since start (read by /metrics through the server's state)
    closed_late: int = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: tuple[str, asyncio.TimerHandle] | None = None
        super().connection_made(transport)
        self._follow_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _follow_deadline(self) -> None:
        """Arm the deadline the client's state calls for: waiting for a head, receiving a body, or none."""
        if self.transport is None or self.transport.is_closing():
            self._cancel_deadline()
            return
        state = self.conn.their_state
        phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if self._deadline is not None and self._deadline[0] == phase:
            return  # already running: a trickle of bytes does not restart it
        self._cancel_deadline()
        if phase is not None:
            seconds = self.head_timeout_s if phase == "head" else self.body_timeout_s
            self._deadline = (phase, self.loop.call_later(seconds, self._expired, phase))

    def _cancel_deadline(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline[1].cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        type(self).closed_late += 1
        log.debug("closed a connection whose request %s was not complete in time", phase)
        self.transport.close()


def protocol_with_deadlines(head_timeout_s: float, body_timeout_s: float) -> type[DeadlineH11Protocol]:
    """A :class:`DeadlineH11Protocol` subclass with these deadlines (seconds), for ``uvicorn.Config(http=...)``."""
    if head_timeout_s <= 0 or body_timeout_s <= 0:
        raise ValueError("request deadlines must be positive")
    return type("PtxsegH11Protocol", (DeadlineH11Protocol,), {"head_timeout_s": head_timeout_s, "body_timeout_s": body_timeout_s})
