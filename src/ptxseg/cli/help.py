"""Help that shows what users type: ``MODEL INPUTS...``, ``PATH``, ``INTEGER``, and nothing after a flag.

typer 0.29 renders a parameter without a metavar by its Python annotation (``<bool>``, ``<list[Path]>``) and a
required argument as ``{model}`` in the usage line. :func:`plain_help` gives every parameter of the command tree
the metavar a command-line tool's help conventionally shows, once, before the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer.core import TyperArgument

#: what an option's value is called in help, by its annotation; a flag shows nothing
TYPE_NAMES: dict[Any, str] = {bool: "", int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def _option_metavar(param: Any) -> str:
    descriptor = param.type_descriptor
    if getattr(param, "is_flag", False):
        return ""
    if descriptor.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in descriptor.choices or ()) + "]"
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return TYPE_NAMES.get(annotation, "TEXT")


def _argument_metavar(param: TyperArgument) -> None:
    name = param.name.upper() + ("..." if param.nargs != 1 else "")
    param.metavar = name
    piece = name if param.required else f"[{name}]"
    # the usage line: MODEL INPUTS..., not {model} {inputs}... (an instance attribute: this parameter only)
    param.get_usage_pieces = lambda ctx, piece=piece: [piece]  # type: ignore[method-assign]
    param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # the name says it: no type column


def plain_help(command: Any) -> Any:
    """Set conventional metavars on every parameter of ``command`` and its subcommands (help options included);
    parameters that name their own metavar keep it. Returns ``command``."""
    help_option = command.get_help_option(typer.Context(command))
    params = [*command.params, *([help_option] if help_option is not None else [])]
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            _argument_metavar(param)
        else:
            param.metavar = _option_metavar(param)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command
