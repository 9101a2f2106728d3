"""The service's result store: one folder per answered radiograph, bounded in count and age.

A result is made in a staging folder (``<root>/.staging/<id>``) and renamed into
``<root>/results/<id>`` only when every file of it is written, so a reader — or a
server stopped half-way — never sees half a result. Result ids are random
(:func:`secrets.token_urlsafe`), never derived from patient data, and a requested
id is checked against their exact shape before it touches the file system. The
oldest results are evicted beyond ``max_results`` or ``max_age_s``; an evicted
id answers "not found" like one that never existed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

#: a result id: 22 URL-safe characters (16 random bytes)
_ID = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")


def is_result_id(text: str) -> bool:
    """Whether ``text`` has the shape of an id this store hands out (anything else is never looked up)."""
    return isinstance(text, str) and _ID.match(text) is not None


class ResultStore:
    """Results under ``root`` (created if missing; staging left by a stopped server is removed at start).

    Args:
        root: the service's own folder.
        max_results: results kept; the oldest beyond it are evicted.
        max_age_s: seconds a result is kept.
    """

    def __init__(self, root: str | os.PathLike[str], max_results: int = 1000, max_age_s: float = 24 * 3600) -> None:
        if max_results < 1 or max_age_s <= 0:
            raise ValueError("the result store needs max_results >= 1 and max_age_s > 0")
        self.root = Path(root)
        self.results = self.root / "results"
        self.staging = self.root / ".staging"
        self.max_results, self.max_age_s = max_results, max_age_s
        self._lock = threading.Lock()
        self.results.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)  # half-made results of a server that was stopped
        self.staging.mkdir(parents=True, exist_ok=True)

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def stage(self, result_id: str) -> Path:
        """An empty staging folder for ``result_id`` (its files are written there, then :meth:`commit`)."""
        folder = self.staging / result_id
        folder.mkdir()
        return folder

    def discard(self, result_id: str) -> None:
        """Drop a staged result (the analysis failed or its request timed out)."""
        shutil.rmtree(self.staging / result_id, ignore_errors=True)

    def commit(self, result_id: str) -> Path:
        """Publish a staged result (one atomic rename), then evict what exceeds the bounds; returns its folder."""
        final = self.results / result_id
        os.replace(self.staging / result_id, final)
        self.evict()
        return final

    def folder(self, result_id: str) -> Path | None:
        """The folder of a published, unexpired result, or None (unknown, malformed or evicted id)."""
        if not is_result_id(result_id):
            return None
        folder = self.results / result_id
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return None
        return folder if age <= self.max_age_s else None

    def file(self, result_id: str, name: str) -> Path | None:
        """One file of a result (``name`` is one of the service's fixed file names), or None."""
        folder = self.folder(result_id)
        if folder is None:
            return None
        path = folder / name
        return path if path.is_file() else None

    def count(self) -> int:
        return sum(1 for p in self.results.iterdir() if p.is_dir())

    def evict(self) -> int:
        """Remove results older than ``max_age_s`` and the oldest beyond ``max_results``; returns how many."""
        with self._lock:
            now = time.time()
            entries = []
            for p in self.results.iterdir():
                with contextlib.suppress(OSError):
                    entries.append((p.stat().st_mtime, p))
            entries.sort()
            doomed = [p for t, p in entries if now - t > self.max_age_s]
            alive = [p for t, p in entries if now - t <= self.max_age_s]
            doomed += alive[: max(0, len(alive) - self.max_results)]
            for p in doomed:
                shutil.rmtree(p, ignore_errors=True)
            return len(doomed)
