"""Settings files of the long-running commands (``triage.yaml``, ``node.yaml``): YAML validated by a pydantic
model into one line per problem, and credentials that never come from the command line."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ptxseg.errors import PtxsegError

Settings = TypeVar("Settings", bound=BaseModel)


def read_settings(path: str | PathLike[str] | None, model: type[Settings], what: str) -> Settings:
    """The ``model`` of the YAML file ``path`` (its defaults without one); one-line :class:`PtxsegError` naming
    every bad key of a bad file."""
    if path is None:
        return model()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PtxsegError(path, f"cannot read the {what}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PtxsegError(path, f"the {what} must be a mapping of setting: value")
    return validate_settings(raw, model, path)


def validate_settings(raw: dict, model: type[Settings], where: str | PathLike[str]) -> Settings:
    """``raw`` validated as ``model``; every problem in one line naming its key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}" for e in exc.errors()
        ]
        raise PtxsegError(where, "; ".join(problems)) from None


def read_credentials(path: str | PathLike[str] | None, env_user: str, env_password: str) -> tuple[str, str] | None:
    """(user, password) from ``path`` (one line ``user:password``), else from the environment variables
    ``env_user`` and ``env_password``, else None."""
    if path is not None:
        try:
            text = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PtxsegError(path, f"cannot read the credentials: {exc}") from None
        line = text.splitlines()[0] if text else ""
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise PtxsegError(path, "the credentials file must hold one line user:password")
        return user, password
    user, password = os.environ.get(env_user), os.environ.get(env_password)
    if bool(user) != bool(password):
        raise PtxsegError("environment", f"set both {env_user} and {env_password}, or neither")
    return (user, password) if user and password else None
