"""The command line as a user runs it: exit codes, one-line errors, help on every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptxseg.artifacts.shipped import shipped_lung_model
from ptxseg.cli import app, main
from ptxseg.io.dicom import write_dicom

from .conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = sorted(c.name for c in app.registered_commands)
#: every command line that has its own help: the commands, each group and each group's subcommands
HELP_PATHS = [
    *([c] for c in COMMANDS),
    *([g.name] for g in app.registered_groups),
    *([g.name, c.name] for g in app.registered_groups for c in g.typer_instance.registered_commands),
]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from ptxseg.cli import run; run()", *args], capture_output=True, text=True, timeout=300
    )


def test_commands_registered():
    assert {"info", "convert", "split", "synth", "models", "demo"} <= set(COMMANDS)


@pytest.mark.slow
def test_models_lists_architectures_with_sizes():
    proc = _run("models", "--size", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    rows = {r["name"]: r for r in report["architectures"]}
    assert {"unet", "ptxsegnet", "pdeseray", "nnunet_ds"} <= set(rows)
    assert rows["pdeseray"]["encoder"] == "(own)" and abs(rows["pdeseray"]["params_m"] - 31.95) < 0.1
    # a U-Net-R34 forward at 64² is about 30.8 GMACs at 512² / 64
    assert 0.3 < rows["unet"]["gmacs"] < 0.7
    assert "tu-convnext_tiny" in report["encoders"]


@pytest.mark.parametrize("path", HELP_PATHS, ids=" ".join)
def test_help_on_every_command(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and " ".join(path) in out


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in [*COMMANDS, *(g.name for g in app.registered_groups)])
    assert len(HELP_PATHS) >= len(COMMANDS) + 4  # config and its list/show/schema are covered too


def test_info_ok_and_refused(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", np.full((300, 300), 90, np.uint8))
    lateral = write_dicom(tmp_path / "lat.dcm", np.full((300, 300), 90, np.uint8), view_position="LL")
    ct = write_dicom(tmp_path / "ct.dcm", np.zeros((300, 300), np.uint8), modality="CT")
    proc = _run("info", str(good), str(lateral))
    assert proc.returncode == 0, proc.stderr
    assert "verdict: ok" in proc.stdout and "verdict: warning (lateral_view)" in proc.stdout
    assert "300 x 300" in proc.stdout
    proc = _run("info", str(good), str(ct), "--json")
    assert proc.returncode == 2
    reports = json.loads(proc.stdout)
    assert [r["verdict"] for r in reports] == ["ok", "refused"]
    assert reports[1]["code"] == "modality"
    assert "Traceback" not in proc.stderr and "1 of 2 file(s) refused" in proc.stderr


def test_info_real_monochrome1():
    path = shared_path("dicom", "chest_pa_cr_mono1.dcm")
    proc = _run("info", str(path), "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)[0]
    assert report["decoded_shape"] == [1955, 1841]
    assert report["metadata"]["PhotometricInterpretation"] == "MONOCHROME1"


def test_bad_input_is_one_line_exit_2(tmp_path):
    bad_csv = tmp_path / "train-rle.csv"
    bad_csv.write_text("ImageId,EncodedPixels\n1.2.3, 5 99999999\n")
    write_dicom(tmp_path / "src" / "1.2.3.dcm", np.zeros((64, 64), np.uint8), sop_instance_uid="1.2.3")
    proc = _run("convert", str(tmp_path / "src"), str(tmp_path / "out"), "--rle-csv", str(bad_csv), "--rle-format", "relative")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(bad_csv) in lines[0] and "1.2.3" in lines[0] and "overruns" in lines[0]
    assert not (tmp_path / "out" / "manifest.csv").exists()
    proc = _run("split", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "no manifest.csv" in proc.stderr


@pytest.mark.slow
def test_synth_convert_split_cli(tmp_path):
    src = tmp_path / "src"
    proc = _run("synth", str(src), "-n", "10", "--size", "96", "--layout", "kaggle", "--positive-fraction", "0.5", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert "with pneumothorax" in proc.stdout and (src / "train-rle.csv").is_file()
    # a corrupt file and a CT among the DICOMs: reported, not fatal
    a_dicom = next((src / "dicom-images-train").rglob("*.dcm")).read_bytes()
    (src / "dicom-images-train" / "9.9.1.dcm").write_bytes(a_dicom[: len(a_dicom) // 2])  # truncated
    write_dicom(src / "dicom-images-train" / "9.9.2.dcm", np.zeros((300, 300), np.uint8), modality="CT")
    out = tmp_path / "ds"
    args = ["convert", str(src), str(out), "--rle-size", "96", "--size", "64"]
    proc = _run(*args, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "images written" in proc.stdout and "qc: modality" in proc.stdout and "qc: corrupt" in proc.stdout
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 12 and manifest.has_image.sum() == 10
    proc = _run(*args, "--quiet")
    assert proc.returncode == 0 and "2 / 10" in proc.stdout  # refused files are retried, the rest resume
    proc = _run("split", str(out), "--folds", "3", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    folds = pd.read_csv(out / "folds.csv")
    assert set(folds.fold) == {0, 1, 2} and len(folds) == 10
    proc = _run("synth", str(tmp_path / "x"), "--positive-fraction", "2")
    assert proc.returncode == 2 and "--positive-fraction" in proc.stderr


@pytest.mark.slow
def test_demo_quick(tmp_path):
    proc = _run("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "dataset" / "manifest.csv").is_file()
    assert (tmp_path / "demo" / "dataset" / "folds.csv").is_file()
    manifest = pd.read_csv(tmp_path / "demo" / "dataset" / "manifest.csv")
    assert (manifest["split"] == "test").any()
    folds = pd.read_csv(tmp_path / "demo" / "dataset" / "folds.csv", dtype={"id": str})
    assert not set(folds["id"]) & set(manifest.loc[manifest["split"] == "test", "id"].astype(str))
    meta = json.loads((tmp_path / "demo" / "model" / "best.json").read_text())
    assert "tuning" in meta and meta["operating_point"]["threshold"] > 0
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    # the phantom lung model is kept apart (predict on real films uses the shipped one) and named where it is used
    assert (tmp_path / "demo" / "lungs_phantom" / "best.json").is_file() and not (tmp_path / "demo" / "model" / "lungs").exists()
    assert "epoch 1: val Dice" in proc.stdout.split("8/11")[1]  # the lung training shows its epochs
    first = json.loads(next((tmp_path / "demo" / "predictions").glob("*.json")).read_text())
    assert first["lung_model"]["path"] == str(tmp_path / "demo" / "lungs_phantom")
    assert first["model_warnings"] and "synthetic phantoms" in first["model"]["warning"]  # the card knows its data
    assert meta["training_data"]["domains"] == {"phantom": int(manifest["has_image"].sum())}
    # docs/demo.md's numbers are written from the run's own record (scripts/demo_numbers.py), and checked against it
    doc = tmp_path / "demo.md"
    doc.write_text("before\n<!-- demo-numbers:start -->\nstale\n<!-- demo-numbers:end -->\nafter\n")
    script = [sys.executable, str(ROOT / "scripts" / "demo_numbers.py"), str(tmp_path / "demo"), "--doc", str(doc)]
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 1  # stale
    assert subprocess.run(script, capture_output=True).returncode == 0
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 0
    record = json.loads((tmp_path / "demo" / "demo.json").read_text())
    written = doc.read_text()
    assert f"{record['test']['images']} held-out test phantoms" in written and "stale" not in written
    assert f"| SIIM mean Dice | **{record['test']['mean_dice']:.3f}** |" in written
    assert "SIIM mean Dice" in proc.stdout and "case sensitivity" in proc.stdout
    assert "not how a model does on patients" in proc.stdout
    # step 10: the shipped lung model (in the package) on real radiographs, each answered (areas and the gate's verdict)
    assert shipped_lung_model() is not None
    shared_path("lungs_real")  # reported as a skip (not passed silently) where ../shared/data is absent
    real = pd.read_csv(tmp_path / "demo" / "lungs_real" / "summary.csv")
    assert len(real) == 3 and (real.status == "ok").all() and (real.right_area_px > 0).all() and (real.left_area_px > 0).all()
    assert "Shipped lung-field model on real radiographs" in proc.stdout
    # step 11: the real pneumothorax model, or the honest reason none ships (docs/real-model.md)
    assert "11/11" in proc.stdout and "Real pneumothorax model: no pneumothorax model ships yet" in proc.stdout


def test_models_prints_a_table_of_every_architecture(capsys):
    from ptxseg.models import list_models

    assert main(["models", "--size", "64", "--no-macs", "-q"]) == 0
    out = capsys.readouterr().out
    assert "ptxseg architectures" in out and all(name in out for name in list_models())
    assert "tu-<name>" in out  # the encoders line
