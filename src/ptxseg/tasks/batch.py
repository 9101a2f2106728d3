"""One loop for every command that turns a batch of radiographs into per-input files (``predict``, ``lungs``).

Inputs are read ahead by threads, each processed input writes its files (each to a temporary name, renamed) and
last its JSON; an input whose stored JSON says it is complete is skipped (resume). A bad input — unreadable,
refused, or failing in analysis — becomes an error row and the batch goes on; a failure to *write* (a full disk,
a read-only folder) is not the input's fault and stops the batch with the :class:`OSError`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ptxseg.clinical.inputs import Radiograph, load_radiograph, unique_ids
from ptxseg.errors import PtxsegError

#: the first columns of every batch command's summary.csv
BASE_COLUMNS = ["input", "id", "status", "reason", "qc", "triage_eligible"]

#: (input path, id, status, reason, document or None, seconds or None) → one summary row
RowMaker = Callable[[Path, str, str, str, "dict[str, Any] | None", "float | None"], dict]


def base_row(columns: list[str], path: Path, image_id: str, status: str, reason: str, doc: dict | None, seconds: float | None) -> dict:
    """A summary row with ``columns`` (None where unknown): the input, its status and, from a result document,
    the ``qc`` column (reader warnings and gate flags, or ``ok``) and ``triage_eligible``."""
    row = dict.fromkeys(columns)
    row.update(input=str(path), id=image_id, status=status, reason=reason, seconds=seconds)
    if doc is not None:
        qc = doc["qc"]
        row.update(qc=";".join([*qc["warnings"], *qc.get("flags", [])]) or "ok", triage_eligible=qc.get("triage_eligible"))
    return row


def prefetch(paths: list[Path], workers: int) -> Iterator[tuple[Path, Radiograph | PtxsegError]]:
    """Radiographs in input order, read ahead by ``workers`` threads (at most 2 × workers in memory)."""

    def load(p: Path):
        try:
            return load_radiograph(p)
        except PtxsegError as exc:
            return exc

    if workers <= 1:
        for p in paths:
            yield p, load(p)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        it = iter(paths)
        for p in it:
            pending.append((p, pool.submit(load, p)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            p, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield p, fut.result()


def run_batch(
    inputs: list[Path],
    process: Callable[[Radiograph, str], dict[str, Any]],
    complete: Callable[[str], dict[str, Any] | None],
    row: RowMaker,
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Process ``inputs`` in order; return one summary row per input.

    Args:
        process: analyses one radiograph under its id, writes its files, returns its JSON document.
        complete: the stored document of an id whose outputs are complete (skipped), else None.
        row: builds the summary row (``status`` ``ok``, ``skipped`` or ``error``).
        on_result: called with each new document (e.g. to print it).
    """
    rows, todo = [], []
    # resume first, from ids and stored JSONs alone: complete inputs are not decoded again
    for path, image_id in zip(inputs, unique_ids(inputs), strict=True):
        done = complete(image_id)
        if done is None:
            todo.append((path, image_id))
        else:
            rows.append(row(path, image_id, "skipped", "complete outputs from an earlier run", done, None))
    stream = prefetch([p for p, _ in todo], workers)
    for (path, loaded), (_, image_id) in zip(progress(stream, len(todo)) if progress else stream, todo, strict=True):
        t0 = time.perf_counter()
        if isinstance(loaded, PtxsegError):
            rows.append(row(path, image_id, "error", loaded.reason, None, None))
            continue
        try:
            doc = process(loaded, image_id)
        except PtxsegError as exc:
            rows.append(row(path, image_id, "error", exc.reason, None, None))
            continue
        except OSError:
            raise  # the output folder's problem (ENOSPC, EROFS …), not the input's
        except Exception as exc:  # noqa: BLE001 - one input's unexpected failure never stops the batch
            rows.append(row(path, image_id, "error", f"analysis failed ({type(exc).__name__}: {str(exc)[:200]})", None, None))
            continue
        rows.append(row(path, image_id, "ok", "", doc, time.perf_counter() - t0))
        if on_result is not None:
            on_result(doc)
    return rows
