"""Standard JSON only, in and out.

Python's ``json`` writes ``NaN``/``Infinity`` tokens that other JSON readers
(browsers, ``jq``, Go, Java) refuse, and reads them back without a word — so a
NaN in a metrics file or a model card could travel silently. ptxseg writes
every JSON document through :func:`dumps` (a non-finite number becomes ``null``)
and reads every JSON file it did not just make through :func:`read_json`
(non-standard tokens, oversized files and malformed documents are one
:class:`PtxsegError` naming the file).
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import Any

from ptxseg.errors import PtxsegError

#: the largest JSON file ptxseg reads (model cards, ensembles, states, run records are a few kB)
MAX_JSON_BYTES = 64 * 1024 * 1024


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return _finite(obj.item())
    return obj


def dumps(obj: Any, indent: int | None = None, default=str) -> str:
    """``obj`` as standard JSON text: NaN and ±Infinity become ``null`` (never the non-standard tokens)."""
    return json.dumps(_finite(obj), indent=indent, default=default, allow_nan=False)


def _refuse_constant(token: str):
    raise ValueError(f"non-standard JSON number {token}")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e999 is valid JSON syntax but overflows to infinity
        raise ValueError(f"JSON number {token[:30]} overflows to infinity")
    return value


def loads(text: str | bytes, where: str | PathLike[str] = "JSON") -> Any:
    """Parse standard JSON; ``NaN``/``Infinity`` tokens, numbers that overflow to infinity, bad syntax or absurd
    nesting are a :class:`PtxsegError`."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise PtxsegError(where, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", code="bad_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PtxsegError(where, f"not valid JSON ({exc})", code="bad_json") from None
    except RecursionError:
        raise PtxsegError(where, "not valid JSON (nested too deeply)", code="bad_json") from None


def read_json(path: str | PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file that may come from anywhere: bounded in size, standard JSON only, UTF-8."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PtxsegError(path, f"JSON file of {size} bytes is larger than the {max_bytes}-byte limit", code="bad_json")
        data = path.read_bytes()
    except FileNotFoundError:
        raise PtxsegError(path, "no such file", code="missing") from None
    except IsADirectoryError:
        raise PtxsegError(path, "is a folder, expected a JSON file", code="bad_json") from None
    except PermissionError as exc:
        raise PtxsegError(path, f"cannot be read ({exc.strerror})", code="bad_json") from None
    return loads(data, path)


def read_json_object(path: str | PathLike[str], max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """:func:`read_json` of a file that must hold a JSON object (a mapping)."""
    doc = read_json(path, max_bytes)
    if not isinstance(doc, dict):
        raise PtxsegError(path, f"expected a JSON object, got {type(doc).__name__}", code="bad_json")
    return doc
