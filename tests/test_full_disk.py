"""A full disk is one line naming the file and the reason (issue 26): pydicom wraps the machine's ENOSPC in its
own error with the tag and a whole traceback in the message; the atomic writer hands back the machine's error,
and the CLI says it in one line, leaving no temporary file behind."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pydicom
import pytest
from pydicom.tag import Tag, tag_in_exception

from ptxseg.cli import os_error_message
from ptxseg.io.atomic import atomic_path
from ptxseg.io.dicom import write_dicom

from .conftest import tiny_models

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


def test_a_wrapped_enospc_comes_back_as_the_machines_error_naming_the_file(tmp_path):
    target = tmp_path / "seg.dcm"
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        with tag_in_exception(Tag(0x7FE00010)):  # what pydicom's writer does around each element
            raise OSError(errno.ENOSPC, "No space left on device")
    exc = caught.value
    assert exc.errno == errno.ENOSPC and exc.filename == str(target)
    assert "Traceback" not in str(exc) and "7FE0" not in str(exc)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file
    line = os_error_message(exc)
    assert "\n" not in line and "no space left" in line and "Traceback" not in line


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (root only), filled but for about 1.2 MB: a 1024² film's overlay PNG (about 1 MB) fits, its
    SEG (about 0.4 MB, written by pydicom) does not."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 2 MB tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", f"ptxseg-{uuid.uuid4().hex[:8]}", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()[:100]}")
    try:
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * max(0, free - 1_200_000))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_predict_onto_a_full_disk_says_one_line_and_leaves_no_partial_file(tmp_path, tiny_disk):
    _, run = tiny_models(12, seed=41)
    film = write_dicom(
        tmp_path / "film.dcm", (np.random.default_rng(2).random((1024, 1024)) * 4000).astype(np.uint16), pixel_spacing=(0.35, 0.35)
    )
    pydicom.dcmread(film)  # a valid input: the failure is the disk's
    out = tiny_disk / "out"
    proc = subprocess.run(
        [sys.executable, "-c", "from ptxseg.cli import run; run()", "predict", str(run), str(film), "--out", str(out), "--seg"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-500:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ptxseg: error")]
    assert len(errors) == 1 and "no space left" in errors[0], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and "got exception" not in proc.stderr
    leftovers = (
        [p.name for p in out.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("."))] if out.exists() else []
    )
    assert leftovers == []
