"""The worker's position in Orthanc's change feed, persisted atomically after every change it finishes.

A worker killed at any moment restarts from the last change it finished: the change in progress is done again,
and since derived objects have deterministic UIDs (:mod:`ptxseg.io.derived`), doing it again replaces what a
first attempt may have stored instead of adding to it.
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
    """``last_change``: the sequence number of the last change finished on ``orthanc`` (0: none yet)."""

    path: Path
    orthanc: str
    last_change: int = 0
    _written: int = -1  # the last value written to ``path``

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
        return cls(path, orthanc, doc["last_change"], doc["last_change"])

    def advance(self, seq: int, persist: bool = True) -> None:
        """Record change ``seq`` as finished; with ``persist``, write the state atomically and durably (skipped
        when nothing changed since the last write)."""
        self.last_change = max(self.last_change, int(seq))
        if not persist or self.last_change == self._written:
            return
        self._written = self.last_change
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, dumps({"format": FORMAT, "orthanc": self.orthanc, "last_change": self.last_change}))
