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


class EpochBars:
    """A training run's per-epoch bars on stderr, driven by the trainer's ``on_batch`` callback.

    Called with each batch's event (anything with ``stage``, ``epoch``, ``epochs``, ``batch``, ``batches`` and
    ``loss``: :class:`ptxseg.train.epoch.BatchEvent`); a new stage or epoch closes the bar and opens the next one.
    Nothing is drawn when ``quiet``. Use it as a context manager (or call :meth:`close`) so the last bar is
    stopped however training ends.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._key: tuple[int, int] | None = None
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> EpochBars:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, event) -> None:
        if self.quiet:
            return
        key = (event.stage, event.epoch)
        if key != self._key:
            self.close()
            self._key = key
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
            )
            self._bar.start()
            description = f"stage {event.stage} epoch {event.epoch + 1}/{event.epochs}"
            self._task = self._bar.add_task(description, total=event.batches, completed=event.batch - 1, loss="-")
        self._bar.update(self._task, completed=event.batch, loss=f"{event.loss:.4f}")

    def close(self) -> None:
        """Stop the open bar (its last state stays on the terminal)."""
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._key = None, None
