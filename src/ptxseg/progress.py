"""Progress bars and tables on stderr/stdout, shared by the commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# soft_wrap: long paths and UIDs stay on one line (copy-pasteable) instead of being folded.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def progress_bar(description: str, quiet: bool = False) -> Callable[[Iterable, int], Iterator]:
    """A wrapper ``(iterable, total) -> iterator`` that shows a bar on stderr unless ``quiet``."""

    def wrap(iterable: Iterable, total: int) -> Iterator:
        if quiet:
            yield from iterable
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err_console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in iterable:
                yield item
                bar.advance(task)

    return wrap
