"""The ``ptxseg`` command line.

Each command lives in a module of this package named for it; they register
themselves on :data:`app`. :func:`main` is the console entry point: a
:class:`~ptxseg.errors.PtxsegError` becomes one line on stderr and exit code 2.

Command functions import the library they run inside themselves, a measured start-up choice: every
``ptxseg`` call (``--help`` included) imports all command modules, and on this project's 2-core machine
``import ptxseg.cli`` takes 4.2–5.5 s as it is, 8.9–10.2 s with the training engine, report, predict, export,
tune and lung-segmentation modules imported up front (two runs each, ``/usr/bin/time python -c "import …"``).
Library modules import at their top.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings

import typer

from ptxseg.errors import PtxsegError, one_line
from ptxseg.io.atomic import system_error

app = typer.Typer(
    name="ptxseg",
    help="Pneumothorax segmentation on chest radiographs: data, models, evaluation, triage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # plain help (``--out PATH   Output folder.``): it reads at 80 columns, where rich panels squeeze the text
    rich_markup_mode=None,
)

# Importing the command modules registers their commands on `app`.
from ptxseg.cli import data as _data  # noqa: E402,F401
from ptxseg.cli import demo as _demo  # noqa: E402,F401
from ptxseg.cli import evaluate as _evaluate  # noqa: E402,F401
from ptxseg.cli import export as _export  # noqa: E402,F401
from ptxseg.cli import info as _info  # noqa: E402,F401
from ptxseg.cli import listen as _listen  # noqa: E402,F401
from ptxseg.cli import lungs as _lungs  # noqa: E402,F401
from ptxseg.cli import models as _models  # noqa: E402,F401
from ptxseg.cli import predict as _predict  # noqa: E402,F401
from ptxseg.cli import pretrain as _pretrain  # noqa: E402,F401
from ptxseg.cli import report as _report  # noqa: E402,F401
from ptxseg.cli import serve as _serve  # noqa: E402,F401
from ptxseg.cli import submit as _submit  # noqa: E402,F401
from ptxseg.cli import synth as _synth  # noqa: E402,F401
from ptxseg.cli import train as _train  # noqa: E402,F401
from ptxseg.cli import triage as _triage  # noqa: E402,F401
from ptxseg.cli import tune as _tune  # noqa: E402,F401
from ptxseg.cli.help import plain_help  # noqa: E402


def _say(message: str) -> None:
    print(f"ptxseg: error: {one_line(message, 2000)}", file=sys.stderr)


def os_error_message(exc: OSError) -> str:
    """One line for a failure of the machine rather than of an input: a full disk, a read-only folder …"""
    exc = system_error(exc)  # not a library's wrapper, whose message may hold a whole traceback
    where = exc.filename or "output"
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return (
            f"{where}: no space left on the device — the inputs are not at fault; free space and run the same command"
            " again (finished outputs are kept, the run resumes)"
        )
    if exc.errno == errno.EROFS:
        return f"{where}: the file system is read-only; choose a writable output folder"
    return f"{where}: {exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]}"


def _worker_error(exc: Exception) -> str | None:
    """The original message of a :class:`PtxsegError` raised in a DataLoader worker process: torch re-raises it
    as a RuntimeError holding the worker's traceback ("Caught PtxsegError in DataLoader worker process 0 …")."""
    text = str(exc)
    if not text.startswith("Caught PtxsegError"):
        return None
    found = re.search(r"PtxsegError: (.+?)\s*\Z", text)
    return found[1] if found else None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Every failure a user can cause is one line on stderr and exit code 2, never a traceback: a usage error
    (unknown option, a value out of range), a :class:`PtxsegError`, or an :class:`OSError` of the machine
    (a full disk, a read-only folder). An unexpected exception is one line with exit code 3
    (``PTXSEG_DEBUG=1`` shows the traceback).
    """
    # a header oddity (pydicom: "Invalid value for VR UI: ...") is a QC warning in the output, not a Python warning
    # printed once per read with the value in it
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    command = plain_help(typer.main.get_command(app))
    try:
        code = command.main(args=argv, prog_name="ptxseg", standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors: bad option values, unknown commands
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help(), file=sys.stderr)
            return 2
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _say(f"{exc.format_message()}{hint}")
        return int(getattr(exc, "exit_code", 2) or 2)
    except typer.Abort:
        print("ptxseg: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except PtxsegError as exc:
        _say(str(exc))
        return 2
    except KeyboardInterrupt:
        print("ptxseg: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if os.environ.get("PTXSEG_DEBUG"):
            raise
        _say(os_error_message(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug must still not print a traceback at a user
        if os.environ.get("PTXSEG_DEBUG"):
            raise
        inner = _worker_error(exc)
        if inner is not None:
            _say(inner)
            return 2
        _say(f"internal error ({type(exc).__name__}: {exc}); please report it — PTXSEG_DEBUG=1 shows the traceback")
        return 3
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
