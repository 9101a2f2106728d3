"""Write files so that a reader never sees half of one, and a full disk is reported as what it is.

Every output of ptxseg is written to a temporary name in the destination folder,
flushed to disk (``fsync``) and renamed into place (``os.replace`` is atomic on
POSIX within a filesystem; the folder is flushed after, so the rename survives
a power cut), so an interrupted run, a killed process or a full disk leaves
either the old file, the new file, or nothing — never a truncated file under a
final name. Write errors (``ENOSPC``, ``EROFS``, ``EACCES``) are raised as
:class:`OSError`, never as a complaint about an input.

Temporary names carry the writer's process id (``.<stem>.<pid>-<rand>.tmp<suffix>``),
so :func:`remove_stale_temps` can delete those of a killed run without touching
those of a run still going on beside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from ptxseg.errors import PtxsegError

_TEMP = re.compile(r"\A\..*\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[^/]*)?\Z")


def temp_name(path: Path) -> Path:
    """The temporary sibling a write of ``path`` goes to (keeps the suffix: OpenCV, Pillow pick formats by it)."""
    return path.with_name(f".{path.stem[:100]}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (renames into it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it to disk (``durable``) and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(errno.EIO, "the writer produced no file", str(path))
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent)  # the rename itself: without this a power cut may undo it
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        root = system_error(exc)
        if root is exc:
            raise
        # a writer that wrapped the machine's error (pydicom adds the tag and a whole traceback to the message):
        # the machine's error itself, naming the file meant
        raise OSError(root.errno, root.strerror, str(path)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def system_error(exc: OSError) -> OSError:
    """The error of the machine behind ``exc``: ``exc`` itself when it has an errno, else the first exception with
    one among its causes (a library that re-raises ``type(exc)(message)`` loses the errno), else ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; a short write (a full disk) raises :class:`OSError`."""
    with atomic_path(path, durable) as tmp, open(tmp, "wb") as fh:
        written = fh.write(data)
        if written != len(data):  # buffered writes raise on error; this guards a misbehaving filesystem
            raise OSError(errno.EIO, f"wrote {written} of {len(data)} bytes", str(path))


def write_text_atomic(path: str | os.PathLike[str], text: str, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), durable)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(folder: str | os.PathLike[str], recursive: bool = True) -> int:
    """Delete temporary files left in ``folder`` by killed ptxseg processes (whose pid no longer runs); return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*"):
        m = _TEMP.match(p.name)
        if m is None or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def prepare_output_dir(folder: str | os.PathLike[str], what: str = "output folder", clean: bool = True) -> Path:
    """Create ``folder`` if needed, check it is a writable folder, and (``clean``) clear temporaries of killed runs.

    Raises:
        PtxsegError: ``folder`` is an existing file, cannot be created, or is not writable —
            one line, before any work starts.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PtxsegError(folder, f"{what} is an existing file, not a folder", code="bad_output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PtxsegError(folder, f"{what} cannot be created ({exc.strerror or exc})", code="bad_output") from None
    probe = temp_name(folder / "write-probe")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PtxsegError(folder, f"{what} is not writable ({exc.strerror or exc})", code="bad_output") from None
    if clean:
        remove_stale_temps(folder)
    return folder
