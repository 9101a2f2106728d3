"""The ``ptxseg`` command line.

Each command lives in a module of this package named for it; they register
themselves on :data:`app`. :func:`main` is the console entry point: a
:class:`~ptxseg.errors.PtxsegError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from ptxseg.errors import PtxsegError

app = typer.Typer(
    name="ptxseg",
    help="Pneumothorax segmentation on chest radiographs: data, models, evaluation, triage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Importing the command modules registers their commands on `app`.
from ptxseg.cli import data as _data  # noqa: E402,F401
from ptxseg.cli import demo as _demo  # noqa: E402,F401
from ptxseg.cli import evaluate as _evaluate  # noqa: E402,F401
from ptxseg.cli import info as _info  # noqa: E402,F401
from ptxseg.cli import models as _models  # noqa: E402,F401
from ptxseg.cli import predict as _predict  # noqa: E402,F401
from ptxseg.cli import pretrain as _pretrain  # noqa: E402,F401
from ptxseg.cli import report as _report  # noqa: E402,F401
from ptxseg.cli import submit as _submit  # noqa: E402,F401
from ptxseg.cli import synth as _synth  # noqa: E402,F401
from ptxseg.cli import train as _train  # noqa: E402,F401
from ptxseg.cli import tune as _tune  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Typer reports usage errors itself (exit 2); a :class:`PtxsegError` from a
    command is printed as one line on stderr, also with exit code 2.
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="ptxseg", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except PtxsegError as exc:
        print(f"ptxseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ptxseg: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
