"""What a newcomer reads: a typo in a model path is "no such file or directory" and leaves nothing behind; a
header oddity is one QC warning, not a Python warning; tidy numbers; epoch lines that show what is selected on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ptxseg.cli import main
from ptxseg.cli.train import epoch_line

from .conftest import shared_path


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "{missing}", "{film}", "--out", "{out}"],
        ["export", "{missing}", "--out", "{out}"],
        ["report", "{missing}", "--out", "{out}"],
        ["serve", "{missing}", "--port", "1"],
        ["evaluate", "--model", "{missing}", "--data", "{tmp}", "--json", "{out}/e.json"],
    ],
    ids=lambda a: a[0],
)
def test_a_mistyped_model_path_is_no_such_file_and_leaves_no_output(tmp_path, capsys, args):
    film = tmp_path / "film.png"
    film.write_bytes(b"")
    values = {"missing": tmp_path / "nomodel", "film": film, "out": tmp_path / "out", "tmp": tmp_path}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nomodel'}: no such file or directory" in err and "pickled" not in err
    assert not (tmp_path / "out").exists()  # no empty --out folder behind a failure before the first input


def test_a_stage_2_siim_dicom_gives_one_qc_warning_and_no_python_warning(tmp_path):
    film = sorted(shared_path("siim", "unlabeled_dicom").glob("*.dcm"))[0]  # SOPInstanceUID ID_…, not a UID
    out = tmp_path / "lungs"
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # what a user's shell may set: every warning shown
    cmd = [sys.executable, "-m", "ptxseg", "lungs", str(film), "--out", str(out), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and film.stem not in proc.stderr, proc.stderr
    doc = json.loads((out / f"{film.stem}.json").read_text())
    assert "uid_invalid" in doc["qc"]["warnings"] and "uid_invalid" in doc["qc"]["meaning"]
    for side in ("right", "left"):
        area = doc[side]["area_mm2"]
        assert area > 0 and area == round(area, 2)  # not 2357.0847160000008


def test_info_does_not_call_a_png_file_name_a_uid(tmp_path, capsys):
    import cv2

    path = tmp_path / "CHNCXR_0001_0.png"
    cv2.imwrite(str(path), (np.random.default_rng(0).random((300, 280)) * 255).astype(np.uint8))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format: PNG" in out and "SOPInstanceUID" not in out and "Rows: 300" in out


def test_the_epoch_line_leads_with_what_the_best_epoch_is_chosen_by():
    record = {"val_dice": 0.7915, "val_dice_tuned": 0.8123, "val_dice_pos": 0.43, "val_empty_correct": 0.9, "best": True}
    tuned = epoch_line(record | {"select_by": "tuned"})
    assert tuned.startswith("val Dice 0.8123 (tuned point; 0.7915 at the configured point)") and tuned.endswith("· best")
    fixed = epoch_line(record | {"select_by": "fixed", "best": False})
    assert fixed.startswith("val Dice 0.7915 (configured point; 0.8123 at the tuned point)") and "best" not in fixed
    assert "empty correct" not in epoch_line(record | {"val_empty_correct": float("nan")})  # a lung model has no empties
