"""Shipped models by name (``ptxseg predict default …``): resolution, listing, and the shipped `default` itself —
a real pneumothorax model whose bundle, card and answers on real SIIM films are what docs/real-model.md says."""

from __future__ import annotations

import json

import pytest

from ptxseg.artifacts.shipped import SHIPPED, resolve_model, shipped_path
from ptxseg.cli import main
from ptxseg.errors import PtxsegError


def test_a_name_is_a_shipped_model_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    assert resolve_model("lungs") == shipped_path("lungs") and (resolve_model("lungs") / "bundle.json").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lungs").mkdir()
    assert resolve_model("lungs") == tmp_path.joinpath("lungs").relative_to(tmp_path)  # the user's own folder wins
    with pytest.raises(PtxsegError, match="no such file or directory \\(shipped models: default, lungs\\)"):
        resolve_model("defualt")
    (tmp_path / "lungs").rmdir()
    monkeypatch.setattr("ptxseg.artifacts.shipped.WEIGHTS_DIR", tmp_path / "nothing")
    with pytest.raises(PtxsegError, match="shipped model name, but this installation does not hold it"):
        resolve_model("lungs")


def test_a_typo_in_the_model_path_reads_as_a_typo(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", str(tmp_path / "nomodel"), str(image), "--out", str(tmp_path / "out")]) == 2
    assert "nomodel: no such file or directory" in capsys.readouterr().err


def test_models_shipped_lists_both(capsys):
    assert main(["models", "--shipped", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["shipped"]}
    assert set(rows) == set(SHIPPED) and rows["lungs"]["installed"]
    assert rows["default"]["installed"] == (shipped_path("default") is not None)


def test_default_says_why_no_real_pneumothorax_model_ships(tmp_path, capsys):
    assert shipped_path("default") is None  # docs/real-model.md: out of fold it did not beat the all-empty answer
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", "default", str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "default: is a shipped model name, but no pneumothorax model ships yet" in err and "docs/real-model.md" in err
    assert main(["models", "--shipped"]) == 0
    assert "not shipped" in capsys.readouterr().out
