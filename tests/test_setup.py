"""``make setup`` says what it installs and how large it is, and offers PyTorch's CPU-only build (checked with
``DRY_RUN=1``, which prints the pip commands instead of running them: the CPU index is not reachable here)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
TORCH, VISION = PINS["torch"].strip(), PINS["torchvision"].strip()


def _plan(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/setup-venv.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DRY_RUN": "1", "VENV": "/nonexistent/venv", **env},
        timeout=60,
    )


def test_setup_names_torch_its_build_and_size():
    proc = _plan()
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert f"torch {TORCH} and torchvision {VISION}" in first and "pinned by constraints.txt" in first
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert "bundles CUDA" in first and "6.4 GB" in first and "TORCH=cpu" in first
    assert proc.stdout.splitlines()[1:] == ["+ pip install -c constraints.txt -e .[dev,cluster]"]


def test_setup_cpu_installs_the_cpu_build_of_the_pinned_versions_first():
    proc = _plan(TORCH="cpu")
    assert proc.returncode == 0, proc.stderr
    commands = proc.stdout.splitlines()[1:]
    assert commands == [
        f"+ pip install --index-url https://download.pytorch.org/whl/cpu torch=={TORCH}+cpu torchvision=={VISION}+cpu",
        "+ pip install -c constraints.txt -e .[dev,cluster]",
    ]
    # the pins stay as they are: 2.14.1+cpu satisfies torch==2.14.1 (PEP 440 local versions)
    from packaging.specifiers import SpecifierSet

    assert f"{TORCH}+cpu" in SpecifierSet(f"=={TORCH}") and f"{VISION}+cpu" in SpecifierSet(f"=={VISION}")


def test_setup_refuses_an_unknown_torch_build():
    proc = _plan(TORCH="gpu")
    assert proc.returncode == 2 and "TORCH must be default or cpu" in proc.stderr
