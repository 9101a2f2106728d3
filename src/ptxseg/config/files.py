"""Config files: untrusted YAML read safely, the shipped recipes by name, ``base:`` chains merged."""

from __future__ import annotations

import copy
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from ptxseg.errors import PtxsegError
from ptxseg.limits import MAX_CONFIG_BYTES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags execute) that also refuses anchors and aliases: an alias "bomb" of a few
    hundred bytes expands to gigabytes when a config is merged; configs reuse values through ``base:``."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            event = self.peek_event()
            raise PtxsegError(
                self.name, f"YAML anchors and aliases are not allowed in configs (line {event.start_mark.line + 1})", code="yaml_alias"
            )
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str | PathLike[str] = "config") -> Any:
    """Parse untrusted YAML: safe types only, no anchors/aliases, at most :data:`~ptxseg.limits.MAX_CONFIG_BYTES`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise PtxsegError(where, f"larger than the {MAX_CONFIG_BYTES}-byte limit of a config", code="yaml_size")
    loader = None
    try:
        loader = _NoAliasLoader(text)  # the reader checks the characters here already
        loader.name = str(where)
        return loader.get_single_data()
    except PtxsegError:
        raise
    except yaml.YAMLError as exc:
        raise PtxsegError(where, f"not valid YAML ({str(exc).splitlines()[0]})", code="bad_yaml") from None
    except RecursionError:
        raise PtxsegError(where, "not valid YAML (nested too deeply)", code="bad_yaml") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_config_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise PtxsegError(path, f"larger than the {MAX_CONFIG_BYTES}-byte limit of a config", code="yaml_size")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PtxsegError(path, "not a UTF-8 text file", code="bad_yaml") from None
    except OSError as exc:
        raise PtxsegError(path, f"cannot be read ({exc.strerror or exc})", code="bad_yaml") from None


def list_configs() -> list[str]:
    """Names of the shipped recipes (files starting with ``_`` are shared bases, not listed)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_"))


def config_path(name_or_path: str | PathLike[str]) -> Path:
    """The file of a shipped config name, or the given path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise PtxsegError(p, "no such config file")
        return p
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise PtxsegError(name_or_path, f"no such config file or shipped config; shipped: {', '.join(list_configs())}")
    return shipped


#: values a derived config replaces whole instead of merging key by key (a loss is one spec, not a section)
_REPLACED = {"loss", "kwargs"}


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        mergeable = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _REPLACED
        out[k] = _deep_merge(out[k], v) if mergeable else copy.deepcopy(v)
    return out


def read_raw(name_or_path: str | PathLike[str], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The config mapping of a file with its ``base`` chain merged in (not yet validated)."""
    path = config_path(name_or_path).resolve()
    if path in _seen:
        raise PtxsegError(path, "config 'base' chain loops back on itself")
    data = load_yaml(_read_config_text(path), path) or {}
    if not isinstance(data, dict):
        raise PtxsegError(path, "a config must be a YAML mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = Path(base) if (path.parent / base).suffix else path.parent / f"{base}.yaml"
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    return _deep_merge(read_raw(base_path if base_path.is_file() else base, (*_seen, path)), data)
