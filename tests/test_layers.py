"""The layers hold (issue 13): import-linter's contracts in ``.importlinter`` pass on the code, and fail on a wrong import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([str(LINT), "--config", str(ROOT / ".importlinter")], capture_output=True, text=True, env=env, timeout=300)


def test_layer_contracts_are_kept():
    proc = _lint(ROOT / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


def test_a_wrong_import_breaks_them(tmp_path):
    copy = tmp_path / "src" / "ptxseg"
    shutil.copytree(ROOT / "src" / "ptxseg", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "infer" / "predictor.py", "a") as fh:  # inference reaching into training code and up into the CLI
        fh.write("\n\ndef _bad():\n    from ptxseg.train.engine import train  # noqa\n    from ptxseg.cli import app  # noqa\n")
    proc = _lint(tmp_path / "src")
    assert proc.returncode == 1
    assert "Contracts: 0 kept, 3 broken." in proc.stdout  # through the CLI, export would reach the pipeline too
    assert "ptxseg.infer.predictor -> ptxseg.train.engine" in proc.stdout and "ptxseg.infer.predictor -> ptxseg.cli" in proc.stdout


def test_sibling_applications_and_export_stay_apart(tmp_path):
    copy = tmp_path / "src" / "ptxseg"
    shutil.copytree(ROOT / "src" / "ptxseg", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "tasks" / "tune.py", "a") as fh:  # one application reaching into a sibling
        fh.write("\n\ndef _bad():\n    from ptxseg.tasks.report import report_model  # noqa\n")
    with open(copy / "deploy" / "export.py", "a") as fh:  # a bundle that would depend on the clinical pipeline
        fh.write("\n\ndef _worse():\n    from ptxseg.clinical.inputs import gather_inputs  # noqa\n")
    proc = _lint(tmp_path / "src")
    assert proc.returncode == 1 and "Contracts: 1 kept, 2 broken." in proc.stdout
    assert (
        "ptxseg.tasks.tune -> ptxseg.tasks.report" in proc.stdout and "ptxseg.deploy.export -> ptxseg.clinical.inputs" in proc.stdout
    )


def test_a_type_annotation_is_a_dependency_too(tmp_path):
    copy = tmp_path / "src" / "ptxseg"
    shutil.copytree(ROOT / "src" / "ptxseg", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "optim.py", "a") as fh:  # the old config <-> optim cycle, hidden behind TYPE_CHECKING
        fh.write("\n\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from ptxseg.config import Config  # noqa\n")
    proc = _lint(tmp_path / "src")
    assert proc.returncode == 1 and "ptxseg.optim -> ptxseg.config" in proc.stdout
