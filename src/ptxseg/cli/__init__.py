"""The ``ptxseg`` command line.

Each command lives in a module of this package named for it; they register
themselves on :data:`app`. :func:`main` is the console entry point: a
:class:`~ptxseg.errors.PtxsegError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import click
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
from ptxseg.cli import info as _info  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (also used by tests)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="ptxseg", standalone_mode=False)
    except PtxsegError as exc:
        print(f"ptxseg: error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("ptxseg: aborted", file=sys.stderr)
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        print("ptxseg: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
