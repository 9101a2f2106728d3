"""The node's durable queue: one SQLite database in the spool (WAL, synchronous FULL), so that a kill -9 at any
moment loses nothing and repeats nothing that a restart cannot make right.

``instances``: one row per received SOP Instance (keyed by its hashed UID: the same instance received twice is
one row, analysed once) with its status — ``received`` → ``analysing`` (each start counted) → ``analysed``,
``not-triaged``, ``error`` or ``failed`` (started ``max_attempts`` times without finishing).

``deliveries``: one row per result object (SEG, SC, SR) and destination — ``pending`` until the destination
acknowledged it (``done``), with the number of tries, the time of the next one and the last error. The result
objects have deterministic UIDs, so a send repeated after a crash replaces what the destination holds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

OBJECTS = ("seg", "sc", "sr")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    key TEXT PRIMARY KEY,
    calling_aet TEXT NOT NULL,
    received REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    finished REAL
);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT NOT NULL,
    destination TEXT NOT NULL,
    object TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    done REAL,
    PRIMARY KEY (key, destination, object)
);
CREATE INDEX IF NOT EXISTS instances_status ON instances (status, received);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""


class NodeQueue:
    """The queue of the spool folder ``spool`` (created when missing). Thread-safe: one connection per thread."""

    def __init__(self, spool: Path) -> None:
        self.path = Path(spool) / "queue.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut, not just a crash
            self._local.db = db
        return db

    # ------------------------------------------------------------------ receiving

    def receive(self, key: str, calling_aet: str) -> bool:
        """Record a received instance (its file already durable in the spool); False when it was known already."""
        cur = self._db().execute(
            "INSERT OR IGNORE INTO instances (key, calling_aet, received, status) VALUES (?, ?, ?, 'received')",
            (key, calling_aet, time.time()),
        )
        return cur.rowcount == 1

    def known(self, key: str) -> bool:
        return self._db().execute("SELECT 1 FROM instances WHERE key = ?", (key,)).fetchone() is not None

    # ------------------------------------------------------------------ analysing

    def next_to_analyse(self) -> tuple[str, int] | None:
        """The oldest instance waiting (or left mid-analysis by a crash), with this start counted durably:
        ``(key, starts)``; None when nothing waits."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT key, attempts FROM instances WHERE status IN ('received', 'analysing') ORDER BY received LIMIT 1"
            ).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute("UPDATE instances SET status = 'analysing', attempts = attempts + 1 WHERE key = ?", (row[0],))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return row[0], row[1] + 1

    def finish(self, key: str, status: str, reason: str = "", destinations: list[str] = ()) -> None:
        """Record how the analysis of ``key`` ended; for ``analysed``, queue every result object for every
        destination in the same transaction."""
        db = self._db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE instances SET status = ?, reason = ?, finished = ? WHERE key = ?", (status, reason, now, key))
            if status == "analysed":
                db.executemany(
                    "INSERT OR IGNORE INTO deliveries (key, destination, object, status, next_at) VALUES (?, ?, ?, 'pending', ?)",
                    [(key, d, o, now) for d in destinations for o in OBJECTS],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ delivering

    def due(self, now: float | None = None, limit: int = 50) -> list[tuple[str, str, str, int]]:
        """Pending deliveries whose time has come: ``(key, destination, object, tries)``, oldest first, each
        instance's objects in SEG, SC, SR order."""
        rows = (
            self._db()
            .execute(
                "SELECT key, destination, object, tries FROM deliveries WHERE status = 'pending' AND next_at <= ? "
                "ORDER BY next_at, key, CASE object WHEN 'seg' THEN 0 WHEN 'sc' THEN 1 ELSE 2 END LIMIT ?",
                (time.time() if now is None else now, limit),
            )
            .fetchall()
        )
        return [(k, d, o, int(t)) for k, d, o, t in rows]

    def delivered(self, key: str, destination: str, obj: str) -> None:
        self._db().execute(
            "UPDATE deliveries SET status = 'done', done = ?, error = '' WHERE key = ? AND destination = ? AND object = ?",
            (time.time(), key, destination, obj),
        )

    def retry_later(self, key: str, destination: str, obj: str, error: str, wait_s: float) -> None:
        self._db().execute(
            "UPDATE deliveries SET tries = tries + 1, next_at = ?, error = ? WHERE key = ? AND destination = ? AND object = ?",
            (time.time() + wait_s, error, key, destination, obj),
        )

    def hold_destination(self, destination: str, until: float) -> None:
        """Put every pending delivery to ``destination`` off until ``until`` (it is down: no use trying each)."""
        self._db().execute(
            "UPDATE deliveries SET next_at = MAX(next_at, ?) WHERE destination = ? AND status = 'pending'", (until, destination)
        )

    def settled(self, key: str) -> bool:
        """Whether every destination has every result object of ``key``."""
        row = self._db().execute("SELECT COUNT(*) FROM deliveries WHERE key = ? AND status != 'done'", (key,)).fetchone()
        return row[0] == 0

    # ------------------------------------------------------------------ reporting

    def counts(self) -> dict[str, Counter]:
        """Instances by status and deliveries by status."""
        db = self._db()
        return {
            "instances": Counter(dict(db.execute("SELECT status, COUNT(*) FROM instances GROUP BY status").fetchall())),
            "deliveries": Counter(dict(db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())),
        }

    def instance(self, key: str) -> dict | None:
        row = self._db().execute("SELECT status, attempts, reason, calling_aet FROM instances WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(zip(("status", "attempts", "reason", "calling_aet"), row, strict=True))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
