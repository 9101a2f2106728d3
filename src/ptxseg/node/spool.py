"""The spool folder: received files (``incoming/<key>.dcm``) and their results (``results/<key>/seg.dcm``,
``sc.dcm``, ``sr.dcm``), each written under a temporary name, flushed and renamed — never half a file. A file's
name is its key, a hash of its SOP Instance UID: nothing a peer sends becomes a path."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from ptxseg.io.atomic import fsync_path, remove_stale_temps, write_bytes_atomic


def instance_key(sop_instance_uid: str) -> str:
    """The spool's name for an instance: 128 bits of the SHA-256 of its SOP Instance UID (hex)."""
    return hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()[:32]


class Spool:
    """The spool under ``root`` (created when missing); sizes in bytes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.results = self.root / "results"
        for folder in (self.incoming, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root)  # what a crash left half-written
        for leftover in self.results.glob(".*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)
        self._lock = threading.Lock()  # the SCP's association threads and the worker both count
        self.bytes = self._measure()

    def _count(self, delta: int) -> None:
        with self._lock:
            self.bytes += delta

    def _measure(self) -> int:
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += (Path(folder) / name).stat().st_size
                except OSError:
                    pass
        return total

    def source(self, key: str) -> Path:
        return self.incoming / f"{key}.dcm"

    def result(self, key: str, obj: str) -> Path:
        return self.results / key / f"{obj}.dcm"

    def store_source(self, key: str, data: bytes) -> None:
        """Write a received instance durably (flushed to disk before the C-STORE is acknowledged)."""
        write_bytes_atomic(self.source(key), data)
        self._count(len(data))

    def store_results(self, key: str, files: dict[str, Path]) -> None:
        """Move the result objects ``files`` (object → path) in as ``results/<key>/`` in one rename."""
        partial = self.results / f".{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for obj, path in files.items():
            data = path.read_bytes()
            write_bytes_atomic(partial / f"{obj}.dcm", data)
            self._count(len(data))
        final = self.results / key
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        fsync_path(self.results)  # the rename survives a power cut before the queue says "analysed"

    def orphans(self, known) -> list[str]:
        """Keys of received files the queue does not list (written, then a crash before the row): ``known(key)``."""
        return [p.stem for p in sorted(self.incoming.glob("*.dcm")) if not known(p.stem)]

    def discard(self, key: str) -> None:
        """Remove an instance's files (after every destination has its results)."""
        for path in [self.source(key), *(self.results / key).glob("*.dcm")]:
            try:
                size = path.stat().st_size
                path.unlink()
                self._count(-size)
            except FileNotFoundError:
                pass
        shutil.rmtree(self.results / key, ignore_errors=True)
