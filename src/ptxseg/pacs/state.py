"""The worker's position in Orthanc's change feed, persisted atomically after every change it finishes.

A worker killed at any moment restarts from the last change it finished: the change in progress is done again,
and since derived objects have deterministic UIDs (:mod:`ptxseg.io.derived`), doing it again replaces what a
first attempt may have stored instead of adding to it. How many times the change in progress was started is
persisted too, before each start, so that a radiograph that kills the worker (out of memory, say) is given up
after a set number of attempts instead of being started again at every restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, read_json_object

FORMAT = "ptxseg-triage-state/1"


@dataclass
class FeedState:
    """``last_change``: the sequence number of the last change finished on ``orthanc`` (0: none yet);
    ``in_progress``: (sequence number, starts so far) of the change being worked on, when one is."""

    path: Path
    orthanc: str
    last_change: int = 0
    in_progress: tuple[int, int] | None = None
    _written: dict | None = None  # the last document written to ``path``

    @classmethod
    def load(cls, path: Path, orthanc: str) -> FeedState:
        """The state at ``path`` for this Orthanc; a fresh one when there is no file. A state written for another
        Orthanc is refused (its sequence numbers mean nothing here)."""
        if not path.is_file():
            return cls(path, orthanc)
        doc = read_json_object(path)
        if doc.get("format") != FORMAT or not isinstance(doc.get("last_change"), int) or doc["last_change"] < 0:
            raise PtxsegError(path, f"not a {FORMAT} file")
        if doc.get("orthanc") != orthanc:
            raise PtxsegError(path, f"belongs to the Orthanc at {doc.get('orthanc')!r}, not {orthanc!r}: use another work_dir")
        progress = doc.get("in_progress")
        valid = progress is None or (
            isinstance(progress, list) and len(progress) == 2 and all(isinstance(v, int) and v >= 0 for v in progress)
        )
        if not valid:
            raise PtxsegError(path, f"not a {FORMAT} file (in_progress must be [change, attempts])")
        state = cls(path, orthanc, doc["last_change"], tuple(progress) if progress else None)
        state._written = state._document()
        return state

    def attempt(self, seq: int) -> int:
        """Record, durably, one more start of change ``seq``; returns how many starts it has had, this one
        included (1 for a change not started before)."""
        seq = int(seq)
        starts = self.in_progress[1] + 1 if self.in_progress is not None and self.in_progress[0] == seq else 1
        self.in_progress = (seq, starts)
        self._write()
        return starts

    def advance(self, seq: int, persist: bool = True) -> None:
        """Record change ``seq`` as finished; with ``persist``, write the state atomically and durably (skipped
        when nothing changed since the last write)."""
        self.last_change = max(self.last_change, int(seq))
        if self.in_progress is not None and self.in_progress[0] <= self.last_change:
            self.in_progress = None
        if persist:
            self._write()

    def _document(self) -> dict:
        doc = {"format": FORMAT, "orthanc": self.orthanc, "last_change": self.last_change}
        if self.in_progress is not None:
            doc["in_progress"] = list(self.in_progress)
        return doc

    def _write(self) -> None:
        doc = self._document()
        if doc == self._written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, dumps(doc))
        self._written = doc
