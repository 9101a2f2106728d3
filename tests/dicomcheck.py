"""``dciodvfy`` (Debian's dicom3tools) on the DICOM objects ptxseg writes; the tests that use it skip without it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="needs dciodvfy (Debian dicom3tools; make test installs it as root with apt-get)"
)


def dciodvfy_errors(path: Path) -> list[str]:
    """The validator's ``Error`` lines for ``path`` (its warnings are advice, e.g. what a DICOMDIR would need)."""
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, errors="replace", timeout=120)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
