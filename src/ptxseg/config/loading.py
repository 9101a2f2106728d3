"""A config from its file, ``--set`` overrides and validation: every problem in one line naming the keys."""

from __future__ import annotations

import math
from os import PathLike
from typing import Any

import yaml
from pydantic import ValidationError

from ptxseg.config.files import config_path, load_yaml, read_raw
from ptxseg.config.schema import Config
from ptxseg.errors import PtxsegError


def _non_finite(node: Any, path: str = "") -> str | None:
    """The dotted key of the first NaN/infinite number in a raw config mapping (any depth), else None."""
    if isinstance(node, float) and not math.isfinite(node):
        return path or "config"
    if isinstance(node, dict):
        for k, v in node.items():
            found = _non_finite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    if isinstance(node, list | tuple):
        for i, v in enumerate(node):
            found = _non_finite(v, f"{path}.{i}")
            if found:
                return found
    return None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed as YAML; list items by index, ``stages.1.size=1024``) in place."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise PtxsegError("--set", f"expected key=value, got {assignment!r}")
    try:
        parsed = load_yaml(value, f"--set {key}") if value != "" else None
    except PtxsegError as exc:
        if exc.code == "yaml_alias":
            raise
        parsed = value
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PtxsegError("--set", f"{'.'.join(parts[: i + 1])}: no list item {part!r} (the list has {len(node)})")
            if last:
                node[int(part)] = parsed
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise PtxsegError("--set", f"{'.'.join(parts[:i])} is not a mapping")
        if last:
            node[part] = parsed
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]


_TYPE_TAGS = {"float", "int", "str", "bool", "none", "dict", "list", "tuple"}


def validate(raw: dict[str, Any], where: str | PathLike[str] = "config", overrides: dict[str, str] | None = None) -> Config:
    """Validate a config mapping; every problem in one line naming the keys.

    Non-finite numbers are refused at any depth (losses, model kwargs and augmentation arguments included).
    ``overrides`` (dotted key → the ``--set`` assignment) lets a problem in an overridden value name its option.
    """
    overrides = overrides or {}

    def named(loc: str) -> str:
        hits = [a for k, a in overrides.items() if loc == k or loc.startswith(k + ".") or k.startswith(loc + ".")]
        return f"--set {hits[-1]}: {loc}" if hits else loc

    bad = _non_finite(raw)
    if bad:
        raise PtxsegError(where, f"{named(bad)}: must be a finite number, not NaN or infinity")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # union members add their type to the location ("float", "list[float]"): keep the field path only
            loc = ".".join(str(p) for p in err["loc"] if "[" not in str(p) and str(p) not in _TYPE_TAGS)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            if not loc and ": " in msg:  # a whole-config check names its key in the message ("augment: ...")
                loc, msg = msg.split(": ", 1)
            shown = repr(err["input"]) if len(repr(err["input"])) <= 80 else repr(err["input"])[:77] + "..."
            problems.append(
                f"{named(loc)}: {msg}" + (f" (got {shown})" if err["type"] not in ("extra_forbidden", "value_error") else "")
            )
        raise PtxsegError(where, "; ".join(dict.fromkeys(problems))) from None


def load_config(name_or_path: str | PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, merge, override and validate a config (default: the shipped ``default``)."""
    name_or_path = name_or_path or "default"
    raw = read_raw(name_or_path)
    for assignment in overrides:
        apply_override(raw, assignment)
    named = {a.partition("=")[0]: a for a in overrides}
    return validate(raw, config_path(name_or_path), named)


def dump_config(cfg: Config) -> str:
    """The config as YAML, every field explicit (what a run directory records)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
