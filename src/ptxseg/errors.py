"""The one exception type that ptxseg raises for bad input.

Every error a user can cause (a corrupt DICOM, an RLE string that overruns its
image, a wrong file type, a bad option) is a :class:`PtxsegError`. The command
line prints it as one line, ``ptxseg: error: <where>: <reason>``, and exits
with code 2, without a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path


def one_line(text: str, limit: int) -> str:
    """``text`` with control characters (newlines, NUL …) escaped and cut to ``limit`` characters: an error
    message names untrusted identifiers and file names, and must stay one line."""
    clean = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def unexpected(exc: BaseException) -> str:
    """A failure nobody foresaw, for a log line or an answer: its type and where it was raised (file and line),
    never its message — a library's message may quote a header value, a UID or a patient's name."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f" at {Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}" if frame is not None else ""
    return f"internal error ({type(exc).__name__}{where})"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UID_LIKE = re.compile(r"\d+(?:\.\d+){2,}")


def _digest(match: re.Match[str]) -> str:
    return "#" + hashlib.sha256(match.group(0).strip("'\"").encode()).hexdigest()[:12]


def redacted(text: str, limit: int = 300) -> str:
    """``text`` (a library's message) fit for a service log: every quoted value and every UID-like number replaced
    by ``#`` and the first 12 hex digits of its SHA-256 (the same digest as :func:`ptxseg.io.names.hashed_uid`, so
    the same instance stays recognisable), control characters escaped, at most ``limit`` characters."""
    return one_line(_UID_LIKE.sub(_digest, _QUOTED.sub(_digest, text)), limit)


#: libraries whose own log lines may quote a header value
QUOTING_LOGGERS = ("pydicom", "highdicom", "PIL")


class _Forward(logging.Handler):
    """Re-logs a library's record on ``target``, :func:`redacted`."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(record.levelno, "%s: %s", record.name, redacted(record.getMessage()))
        except Exception:  # noqa: BLE001 - a log line must never stop the service
            self.handleError(record)


def route_warnings(logger: logging.Logger) -> None:
    """Send every Python warning (pydicom's ``Invalid value for VR UI: '<the UID>'``, highdicom's …) and the
    warnings pydicom, highdicom and Pillow log to ``logger`` as one :func:`redacted` line each, instead of raw
    to stderr: a service's log never carries a header value. For long-running processes (``serve``,
    ``triage``); a library never calls this."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001 - warnings' signature
        logger.warning("%s from %s: %s", category.__name__, Path(filename).name, redacted(str(message)))

    warnings.showwarning = show
    for name in QUOTING_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(h, _Forward) for h in library.handlers):
            library.addHandler(_Forward(logger))
        library.propagate = False


class PtxsegError(Exception):
    """Bad input, named by where it came from and why it was refused.

    Args:
        where: the file, ImageId or option the problem is about.
        reason: one short sentence, no trailing period needed.
        code: a stable machine-readable tag (``"not_dicom"``, ``"modality"`` …)
            that callers such as the converter's QC use to classify the failure.
    """

    def __init__(self, where: str | PathLike[str], reason: str, code: str = "error") -> None:
        self.where = one_line(str(where), 300)
        self.reason = one_line(str(reason), 1000)
        self.code = code
        super().__init__(f"{self.where}: {self.reason}")


@contextmanager
def reading(path: str | PathLike[str], what: str = "file", code: str = "corrupt") -> Iterator[None]:
    """The one guard around reading an untrusted file: any failure inside becomes a :class:`PtxsegError`.

    Parsers of real-world formats (pydicom, zlib, OpenCV, the JPEG plugins,
    safetensors) raise dozens of exception types on malformed input; none of them
    may escape as a traceback or stop a batch. A :class:`PtxsegError` raised inside
    passes through unchanged; anything else becomes ``unreadable <what> (<type>: <message>)``
    with ``code``. A :class:`MemoryError` is reported as the file being too large.
    """
    try:
        yield
    except PtxsegError:
        raise
    except MemoryError:
        raise PtxsegError(path, f"{what} too large to decode in the memory available", code="too_large") from None
    except RecursionError:
        raise PtxsegError(path, f"unreadable {what} (nested too deeply)", code=code) from None
    except Exception as exc:  # noqa: BLE001 - the point of this guard
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        raise PtxsegError(path, f"unreadable {what} ({detail})", code=code) from None


def service_logger(name: str, level: str | None = None) -> logging.Logger:
    """The stderr logger of a long-running command (``ptxseg triage``, ``ptxseg listen``): one timestamped line per
    event at ``level`` (default ``PTXSEG_LOG_LEVEL``, else info), library warnings routed onto it (:func:`route_warnings`)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel((level or os.environ.get("PTXSEG_LOG_LEVEL", "info")).upper())
    route_warnings(logger)  # pydicom's warnings quote UIDs and names: hashed, on our logger
    return logger
