"""Map a function over jobs in worker processes, in order, with an optional progress wrapper."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def process_map(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int = 1,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> list:
    """``[fn(job) for job in jobs]``, computed in ``workers`` processes when ``workers > 1``.

    Results keep the order of ``jobs``. ``progress(iterable, total)`` wraps the
    stream of results (e.g. a progress bar). ``fn`` must be picklable (a
    module-level function).
    """
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            stream = pool.map(fn, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
            return list(progress(stream, len(jobs)) if progress else stream)
    stream = map(fn, jobs)
    return list(progress(stream, len(jobs)) if progress else stream)
