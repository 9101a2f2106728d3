"""Help reads like a command-line tool's: ``MODEL INPUTS...``, ``--out PATH``, flags without a type, every line
within 80 columns; ``ptxseg config list`` keeps every column at 80 columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer

from ptxseg.cli import app, main

INTERNAL = re.compile(r"<(bool|int|float|str|path|list\[[^\]]*\])>|\{[a-z_]+\}", re.IGNORECASE)


def _commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("path", list(_commands()), ids=lambda p: " ".join(p) or "ptxseg")
def test_help_shows_what_users_type_within_80_columns(path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Usage: ptxseg {' '.join(path)}".rstrip())
    assert not INTERNAL.search(text), INTERNAL.search(text).group(0)
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long[0]


def test_arguments_and_options_are_named_as_typed(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["predict", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage: ptxseg predict [OPTIONS] MODEL INPUTS..." in text
    assert re.search(r"^  --out PATH\s", text, re.MULTILINE) and re.search(r"^  --workers INTEGER\s", text, re.MULTILINE)
    assert re.search(r"^  --seg\s{3,}Also write", text, re.MULTILINE)  # a flag: no type after it
    assert "--lungs PATH" in text and "shipped, trained on real radiographs; the default" in " ".join(text.split())


@pytest.mark.slow
def test_config_list_keeps_every_column_at_80_columns():
    from ptxseg.config import list_configs, load_config

    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "ptxseg", "config", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    flat = " ".join(" ".join(lines).split())
    for name in list_configs():
        cfg = load_config(name)
        assert f"{name} {cfg.model.name}/{cfg.model.encoder or '-'}" in flat
        assert " ".join(cfg.reference.split()) in flat  # the whole reference, wrapped, not cut off
