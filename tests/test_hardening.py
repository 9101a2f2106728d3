"""Hostile and broken inputs (issue 12): one test group per class of failure.

1. identifiers read from files never become paths;
2. a broken model or a NaN never reads as "no pneumothorax";
3. one bad input never stops a batch, and never prints a traceback;
4. no half-written file under a final name, and a full disk is not blamed on an input;
5. bounded resources;
6. smaller items (BOM, EXIF orientation, tiny images, option checks …).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ptxseg.artifacts.checkpoint import load_model, save_weights
from ptxseg.artifacts.ensemble import read_ensemble
from ptxseg.cli import main
from ptxseg.clinical.inputs import gather_inputs, input_id, load_radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.config import load_config
from ptxseg.data.convert import convert_dataset
from ptxseg.data.manifest import read_manifest
from ptxseg.errors import PtxsegError
from ptxseg.infer.predictor import Predictor
from ptxseg.io.atomic import prepare_output_dir, remove_stale_temps
from ptxseg.io.dicom import write_dicom
from ptxseg.io.images import read_image, read_radiograph_dataset, write_png
from ptxseg.io.jsonfile import dumps, loads
from ptxseg.io.names import check_name, is_safe_name, safe_name, under
from ptxseg.io.rle import read_rle_csv, rle_decode
from ptxseg.io.tensors import read_tensors
from ptxseg.models import create_model
from ptxseg.synth.dataset import synth_dataset
from ptxseg.tasks.predict import predict_batch
from ptxseg.train.engine import train

from .conftest import model_card, shared_path

TINY = ["data.size=64", "model.encoder=resnet18", "training.epochs=1", "training.batch_size=4", "data.workers=0", "augment=[]"]
HOSTILE_IDS = ["../../other_model/best", "/tmp/ptxseg-abs/evil", "1." * 200 + "1", "1.2\x003.4", "x\n", "..", ".", "", "a/b"]


def _bundle(folder: Path, name: str = "m", **meta_changes) -> Path:
    """An untrained U-Net-R18 at 64 px saved as a model (random weights: these tests check plumbing, not accuracy)."""
    torch.manual_seed(0)
    model = create_model("unet", encoder="resnet18")
    return save_weights(folder / f"{name}.safetensors", model, model_card(**meta_changes))


def _gradient(n: int = 64) -> np.ndarray:
    return np.tile((np.arange(n, dtype=np.uint16) * (4000 // n)), (n, 1))


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from ptxseg.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("ptxseg: error:")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def _strict_json(path: Path):
    """Parse a file as standard JSON (NaN/Infinity tokens refused)."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{path}: non-standard token {token}"))


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs mounted at ``path`` (root only; skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}): needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ============================================================== 1. identifiers never become paths


def test_safe_names_refuse_or_map_every_hostile_identifier():
    for bad in HOSTILE_IDS:
        assert not is_safe_name(bad)
        with pytest.raises(PtxsegError, match="not a safe file name") as info:
            check_name(bad, "manifest.csv")
        assert "\n" not in str(info.value) and "\x00" not in str(info.value)  # the message stays one line
        mapped = safe_name(bad)
        assert is_safe_name(mapped) and mapped == safe_name(bad)  # deterministic
    assert len({safe_name(b) for b in HOSTILE_IDS}) == len(HOSTILE_IDS)  # distinct ids stay distinct
    assert safe_name("1.2.840.113619.2.55.3") == "1.2.840.113619.2.55.3"  # a real UID is kept as is
    assert check_name("ID_0011fe81e") == "ID_0011fe81e"


def test_under_refuses_escapes(tmp_path):
    assert under(tmp_path, "a.png") == tmp_path / "a.png"
    for bad in ("../x", "/etc/passwd", "a/../../x", "."):
        with pytest.raises(PtxsegError, match="outside its folder"):
            under(tmp_path, bad)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(PtxsegError, match="outside its folder"):
        under(tmp_path, "link", "x")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_predict_names_outputs_safely_from_hostile_uids(tmp_path):
    """A DICOM whose SOPInstanceUID is a path, absolute, 401 characters or holds a NUL: every output stays in --out,
    the other model beside it is untouched, and the batch completes."""
    victim = tmp_path / "other_model"
    victim_weights = _bundle(victim, "best")
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    model = _bundle(tmp_path / "model")
    inputs = tmp_path / "in"
    uids = ["../../other_model/best", "/tmp/ptxseg-abs/evil", "1." * 200 + "1", "1.2\x003.4", "1.2.3.4.5"]
    for k, uid in enumerate(uids):  # pydicom warns about the invalid UI values: that is the point
        write_dicom(inputs / f"in{k}.dcm", _gradient(), sop_instance_uid=uid)
    out = tmp_path / "work" / "out"
    assert main(["predict", str(model), str(inputs), "--out", str(out), "--no-lungs", "-q", "--seg"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 5 and set(summary["status"]) == {"ok"}
    assert all(is_safe_name(i) for i in summary["id"]) and "1.2.3.4.5" in set(summary["id"])
    every = [p for p in tmp_path.rglob("*") if p.is_file()]
    outside = [
        p for p in every if not p.is_relative_to(out) and not p.is_relative_to(inputs) and not p.is_relative_to(tmp_path / "model")
    ]
    assert sorted(p.relative_to(tmp_path) for p in outside) == sorted(Path("other_model") / n for n in before)
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before and load_model(victim_weights)
    assert not Path("/tmp/ptxseg-abs").exists()
    for image_id in summary["id"]:
        doc = _strict_json(out / f"{image_id}.json")
        assert doc["input"]["id"] == image_id and all(is_safe_name(n) for n in doc["outputs"].values() if n)
    assert main(["predict", str(model), str(inputs), "--out", str(out), "--no-lungs", "-q", "--seg"]) == 0  # resume by safe ids
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"skipped"}


@pytest.mark.slow
def test_manifest_ids_never_reach_a_path(tmp_path):
    data = tmp_path / "ds"
    synth_dataset(data, 8, size=64, seed=2, positive_fraction=0.5)
    manifest = pd.read_csv(data / "manifest.csv", dtype=str)
    manifest.loc[0, "id"] = "../../x"
    manifest.to_csv(data / "manifest.csv", index=False)
    with pytest.raises(PtxsegError, match=r"manifest.csv: id '\.\./\.\./x' is not a safe file name"):
        read_manifest(data)
    model = _bundle(tmp_path / "model")
    probs = tmp_path / "a" / "b" / "probs"
    proc = _cli("evaluate", "--model", str(model), "--data", str(data), "--split", "train", "--save-probs", str(probs), "-q")
    assert proc.returncode == 2 and "not a safe file name" in _one_line(proc)
    assert not (tmp_path / "a" / "x.npz").exists() and not list(probs.glob("*.npz"))
    manifest.loc[0, "id"] = "abc\n"  # a trailing newline passes a `$` anchor, not this check
    manifest.to_csv(data / "manifest.csv", index=False)
    with pytest.raises(PtxsegError, match="not a safe file name"):
        read_manifest(data)


def test_convert_refuses_unsafe_ids_and_goes_on(tmp_path):
    src = tmp_path / "src"
    write_dicom(src / "1.2.3.dcm", _gradient(256), sop_instance_uid="1.2.3")
    write_dicom(src / "evil\n.dcm", _gradient(256), sop_instance_uid="1.2.4")  # a file name ending in a newline
    rle = src / "train-rle.csv"
    rle.write_text("ImageId,EncodedPixels\n1.2.3,-1\n../../evil,1 5\n")
    out = tmp_path / "deep" / "out"
    result = convert_dataset(src, out, rle_format="relative", rle_shape=(256, 256), workers=1)
    rows = {r["source"]: r for r in result.records}
    assert rows["1.2.3.dcm"]["has_image"] == 1 and rows["1.2.3.dcm"]["qc"] == "ok"
    assert "unsafe_id" in rows["evil\n.dcm"]["qc"] and rows["evil\n.dcm"]["has_image"] == 0
    assert sum("unsafe_id" in r["qc"] for r in result.records) == 2  # the RLE row's ImageId too
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(src)}
    assert all(p.is_relative_to("deep/out") for p in written) and not (tmp_path / "evil").exists()
    assert set(read_manifest(out)["id"]) >= {"1.2.3"}  # the manifest reads back: every stored id is safe


# ============================================================== 2. a broken model or NaN never reads as "no pneumothorax"


def test_non_finite_config_values_refused():
    for override, key in (
        ("optimizer.lr=.inf", "optimizer.lr"),
        ("data.mean=.nan", "data.mean"),
        ("loss={name: focal, gamma: .inf}", "loss.gamma"),
        ("augment=[{name: Affine, rotate: .nan}]", "augment.0.rotate"),
    ):
        with pytest.raises(PtxsegError, match=f"--set .*{key}: must be a finite number"):
            load_config("default", [override])


def test_training_stops_on_divergence_and_keeps_the_last_good_checkpoint(tmp_path):
    data = tmp_path / "ds"
    synth_dataset(data, 16, size=64, seed=3, positive_fraction=0.5)
    stages = "stages=[{epochs: 1, lr: 0.001}, {epochs: 1, lr: 1.0e+30}]"  # stage 1 starts from stage 0's best
    cfg = load_config("default", [*TINY, stages])
    run = tmp_path / "run"
    with pytest.raises(PtxsegError, match="diverged: .* is NaN or infinite") as info:
        train(cfg, data, run)
    assert info.value.code == "non_finite"
    good = run / "checkpoints" / "stage0_best.safetensors"
    assert good.is_file() and load_model(good)  # finite, loads
    for weights in run.rglob("*.safetensors"):  # nothing non-finite was ever written
        assert all(bool(torch.isfinite(t).all()) for t in read_tensors(weights).values() if t.is_floating_point())
    for record in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(record, parse_constant=lambda t: pytest.fail(f"metrics.jsonl holds {t}"))
    assert not (run / "best.safetensors").exists()  # no final model claims to be trained


BROKEN_CARDS = {
    "std0": (lambda c: {**c, "preprocessing": {**c["preprocessing"], "std": 0}}, "preprocessing.std"),
    "std_nan": (lambda c: {**c, "preprocessing": {**c["preprocessing"], "std": float("nan")}}, "non-standard JSON number NaN"),
    "size": (lambda c: {**c, "preprocessing": {**c["preprocessing"], "size": 100000}}, "preprocessing.size"),
    "nokeys": (lambda c: {"format": c["format"], "model": c["model"]}, "preprocessing: Field required"),
    "unknown": (lambda c: {**c, "colour": "blue"}, "colour: unknown field"),
    "op": (lambda c: {**c, "operating_point": {"threshold": 1.5}}, "threshold must be a probability"),
    "kwargs": (lambda c: {**c, "model": {**c["model"], "kwargs": {"activation": "sigmoid"}}}, "unknown argument 'activation'"),
}


@pytest.mark.parametrize("name", BROKEN_CARDS)
def test_a_broken_model_card_is_refused_with_its_field(tmp_path, name):
    model = _bundle(tmp_path, "m")
    change, needle = BROKEN_CARDS[name]
    path = tmp_path / f"{name}.safetensors"
    shutil.copy(model, path)
    path.with_suffix(".json").write_text(json.dumps(change(json.loads(model.with_suffix(".json").read_text()))))  # NaN: a bare token
    with pytest.raises(PtxsegError) as info:
        load_model(path)
    assert needle in str(info.value)


def test_weights_holding_nan_are_refused(tmp_path):
    from safetensors.torch import save_file

    model = _bundle(tmp_path, "m")
    nan = tmp_path / "nan.safetensors"
    state = create_model("unet", encoder="resnet18").state_dict()
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    save_file({k: v.contiguous() for k, v in state.items()}, str(nan))
    shutil.copy(model.with_suffix(".json"), nan.with_suffix(".json"))
    with pytest.raises(PtxsegError, match="hold NaN or infinity"):
        load_model(nan)


@pytest.mark.parametrize("name", ["trunc", "garbage", "empty"])
def test_a_damaged_weights_file_is_refused(tmp_path, name):
    model = _bundle(tmp_path, "m")
    data = {"trunc": model.read_bytes()[:5000], "garbage": os.urandom(4096), "empty": b""}[name]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    shutil.copy(model.with_suffix(".json"), path.with_suffix(".json"))
    with pytest.raises(PtxsegError, match="safetensors"):
        load_model(path)


def test_non_finite_ensemble_weights_are_refused(tmp_path):
    model = _bundle(tmp_path, "m")
    ensemble = tmp_path / "ens.json"
    ensemble.write_text(
        json.dumps({"format": "ptxseg-ensemble/1", "members": ["m.safetensors"], "weights": ["nan"], "tta": [], "operating_point": {}})
    )
    with pytest.raises(PtxsegError, match="finite"):
        read_ensemble(ensemble)
    with pytest.raises(PtxsegError, match="finite"):
        Predictor([model], weights=[float("nan")])


def test_a_broken_model_is_never_written(tmp_path):
    broken = create_model("unet", encoder="resnet18")
    next(broken.parameters()).data.fill_(float("inf"))
    with pytest.raises(PtxsegError, match="not saved: .* not finite"):
        save_weights(tmp_path / "broken.safetensors", broken, model_card())
    assert not list(tmp_path.iterdir())


class _NaNModel(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x, float("nan"))


def test_non_finite_probabilities_are_errors_never_negative_findings(tmp_path):
    pipeline = ClinicalPipeline(_bundle(tmp_path), lungs=False)
    pipeline.ptx.models = [_NaNModel()]
    image = tmp_path / "in.png"
    write_png(image, (_gradient(64) // 16).astype(np.uint8))
    table = predict_batch(pipeline, [image], tmp_path / "out")
    row = table.iloc[0]
    assert row["status"] == "error" and "non-finite probabilities" in row["reason"] and pd.isna(row["present"])
    assert not (tmp_path / "out" / "in.json").exists()


def test_json_is_standard():
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32("nan")}) == '{"a": null, "b": [null, 1.5], "c": null}'
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(PtxsegError, match="non-standard JSON number"):
            loads(f'{{"x": {token}}}')
    with pytest.raises(PtxsegError, match="overflows to infinity"):
        loads('{"std": 1e999}')
    assert loads('{"x": [1.5e300, -2, null]}') == {"x": [1.5e300, -2, None]}


# ============================================================== 3. one bad input never stops a batch


def _patch(path: Path, old: bytes, new: bytes) -> Path:
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new)
    path.write_bytes(raw.replace(old, new))
    return path


def _malformed_dicoms(folder: Path) -> dict[str, Path]:
    """The malformed headers of the issue, each a real DICOM file with one thing broken."""
    folder.mkdir(parents=True, exist_ok=True)
    # fixed UIDs: the bytes of every variant (and so where the deflate damage falls) are the same on every run
    base = write_dicom(
        folder / "good.dcm", _gradient(), sop_instance_uid="1.2.9.1", study_instance_uid="1.2.9", series_instance_uid="1.2.9.0"
    )
    out = {"good": base}

    def variant(name: str, edit) -> None:
        ds = pydicom.dcmread(base)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.9.{len(out) + 1}"
        edit(ds)
        path = folder / f"{name}.dcm"
        ds.save_as(path)
        out[name] = path

    def deflate(ds):
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    variant("deflate", deflate)
    raw = bytearray(out["deflate"].read_bytes())
    raw[len(raw) // 2 :] = np.random.default_rng(0).integers(0, 256, len(raw) - len(raw) // 2, dtype=np.uint8).tobytes()
    out["deflate"].write_bytes(bytes(raw))

    def float_pixels(ds):
        ds.FloatPixelData = (np.random.default_rng(1).random((64, 64)) * 100).astype(np.float32).tobytes()
        del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
        ds.BitsAllocated = 32

    variant("float_no_bits_stored", float_pixels)
    variant("frames", lambda ds: setattr(ds, "NumberOfFrames", "12345678"))
    _patch(out["frames"], b"12345678", b"abcdefgh")

    def short_lut(ds):
        item = Dataset()
        item.LUTDescriptor, item.ModalityLUTType = [4096, 0, 16], "US"
        item.LUTData = np.arange(10, dtype="<u2").tobytes()  # 10 entries where the descriptor promises 4096
        ds.ModalityLUTSequence = [item]

    variant("short_modality_lut", short_lut)

    def slope(ds):
        ds.RescaleSlope, ds.RescaleIntercept = "9.87654321", "0"

    variant("rescale_text", slope)
    _patch(out["rescale_text"], b"9.87654321", b"abcdefghij")

    def empty_voi(ds):
        item = Dataset()
        item.LUTDescriptor, item.LUTData = [0, 0, 16], b""
        ds.VOILUTSequence = [item]

    variant("empty_voi_lut", empty_voi)
    variant("window_zero", lambda ds: (setattr(ds, "WindowCenter", 100), setattr(ds, "WindowWidth", 0)))

    def window_text(ds):
        ds.WindowCenter, ds.WindowWidth = "12345.678", "300"

    variant("window_text", window_text)
    _patch(out["window_text"], b"12345.678", b"abcdefghi")
    variant("huge", lambda ds: (setattr(ds, "Rows", 60000), setattr(ds, "Columns", 60000)))
    return out


def test_malformed_dicom_headers_are_one_error_each(tmp_path):
    files = _malformed_dicoms(tmp_path / "in")
    outcomes = {}
    for name, path in files.items():
        try:
            _, meta, _ = read_radiograph_dataset(path)
            outcomes[name] = ("ok", meta.warnings)
        except PtxsegError as exc:  # the only failure allowed
            assert exc.where == str(path) and "\n" not in str(exc)
            outcomes[name] = (exc.code, exc.reason)
    assert outcomes["good"] == ("ok", [])
    assert outcomes["window_zero"] == ("ok", ["voi_ignored"]) and outcomes["window_text"][0] in ("ok", "corrupt")
    assert outcomes["huge"][0] == "too_large"
    for name in ("deflate", "frames", "short_modality_lut", "rescale_text"):
        assert outcomes[name][0] == "corrupt", (name, outcomes[name])
    assert "NumberOfFrames 'abcdefgh' is not an integer" in outcomes["frames"][1]
    assert "RescaleSlope 'abcdefghij' is not a number" in outcomes["rescale_text"][1]
    assert "Modality LUT holds 10 entries, its descriptor promises 4096" in outcomes["short_modality_lut"][1]
    proc = _cli("info", *map(str, files.values()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    model = _bundle(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(out), "--no-lungs", "-q"]) == 1
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(files)  # one row per input: the batch went on
    by_file = {Path(p).stem: s for p, s in zip(summary["input"], summary["status"], strict=True)}
    assert by_file["good"] == "ok" and by_file["window_zero"] == "ok" and by_file["deflate"] == "error"


@pytest.mark.slow
def test_broken_model_and_lung_model_are_one_line(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    shutil.copy(_bundle(tmp_path, "m"), model_dir / "best.safetensors")
    shutil.copy(tmp_path / "m.json", model_dir / "best.json")
    image = tmp_path / "x.png"
    write_png(image, (_gradient() // 16).astype(np.uint8))
    lungs = model_dir / "lungs"
    lungs.mkdir()
    (lungs / "best.safetensors").write_bytes(b"\x00" * 100)
    (lungs / "best.json").write_text('{"format": "ptxseg-checkpoint/1"')  # truncated
    proc = _cli("predict", str(model_dir), str(image), "--lungs", str(lungs), "--out", str(tmp_path / "out"), "-q")
    assert proc.returncode == 2 and "lungs/best.json" in _one_line(proc) and "not valid JSON" in proc.stderr
    (lungs / "best.json").write_text((tmp_path / "m.json").read_text().replace('"pneumothorax"', '"lungs"'))
    proc = _cli("predict", str(model_dir), str(image), "--lungs", str(lungs), "--out", str(tmp_path / "out"), "-q")
    assert proc.returncode == 2 and "lungs/best.safetensors" in _one_line(proc)


@pytest.mark.slow
def test_truncated_resume_state_is_one_line(tmp_path):
    data = tmp_path / "ds"
    synth_dataset(data, 12, size=64, seed=4, positive_fraction=0.5)
    run = tmp_path / "run"
    cfg = load_config("default", [*TINY, "training.checkpoint_every_steps=1"])
    train(cfg, data, run)
    state = run / "state" / "state.json"
    state.write_text(state.read_text()[:50])
    proc = _cli("train", "--resume", str(run), "-q")
    assert proc.returncode == 2 and "state.json: not valid JSON" in _one_line(proc)
    for tensors in (run / "state").glob("state-*.safetensors"):
        tensors.write_bytes(tensors.read_bytes()[:100])
    state.write_text(json.dumps({"format": "ptxseg-checkpoint/1", "tensors": "../../../x.safetensors", "state": {}}))
    proc = _cli("train", "--resume", str(run), "-q")
    assert proc.returncode == 2 and "no valid tensors file" in _one_line(proc)


def test_list_files_that_list_themselves_are_read_once(tmp_path):
    image = tmp_path / "x.png"
    write_png(image, (_gradient() // 16).astype(np.uint8))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(f"a.txt\nb.txt\n{image}\n")
    b.write_text("a.txt\nx.png\n")
    assert gather_inputs([a]) == [image]
    assert gather_inputs([b, a]) == [image]


@pytest.mark.slow
def test_out_that_is_a_file_or_read_only(tmp_path):
    model = _bundle(tmp_path / "model")
    image = tmp_path / "x.png"
    write_png(image, (_gradient() // 16).astype(np.uint8))
    proc = _cli("predict", str(model), str(image), "--out", str(image), "--no-lungs", "-q")
    assert proc.returncode == 2 and "is an existing file" in _one_line(proc)
    assert read_image(image).shape == (64, 64)  # untouched
    with _tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        proc = _cli("predict", str(model), str(image), "--out", str(ro / "out"), "--no-lungs", "-q")
        assert proc.returncode == 2 and "Read-only file system" in _one_line(proc)
        proc = _cli("synth", str(ro / "s"), "-n", "2", "--size", "64", "-q")
        assert proc.returncode == 2 and "read-only" in _one_line(proc).lower()


# ============================================================== 4. no half-written file; a full disk is not a corrupt input


@pytest.mark.slow
def test_full_disk_is_reported_and_never_blamed_on_an_input(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for k in range(8):  # incompressible 16-bit noise: each stored PNG is ~0.5 MB, the disk holds 2 MB
        write_dicom(src / f"1.2.{k}.dcm", rng.integers(0, 65535, (512, 512), dtype=np.uint16), sop_instance_uid=f"1.2.{k}")
    (src / "train-rle.csv").write_text("ImageId,EncodedPixels\n" + "".join(f"1.2.{k},-1\n" for k in range(8)))
    with _tmpfs(tmp_path / "full", "2m") as disk:
        out = disk / "ds"
        proc = _cli("convert", str(src), str(out), "--size", "512", "--rle-size", "512", "--workers", "1", "-q")
        assert proc.returncode == 2 and "no space left on the device" in _one_line(proc)
        assert "inputs are not at fault" in proc.stderr
        pngs = list((out / "images").glob("*.png"))
        assert 0 < len(pngs) < 8
        for png in pngs:  # every file under a final name is whole
            assert read_image(png).shape == (512, 512)
        records = [json.loads(p.read_text()) for p in (out / ".convert" / "items").glob("*.json")]
        assert records and all(r["qc"] == "ok" for r in records)  # no input tagged corrupt
        assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no temporary left behind
        assert not any(r["qc"] == "corrupt" for r in (json.loads(p.read_text()) for p in out.rglob("items/*.json")))
    proc = _cli("convert", str(src), str(tmp_path / "ds"), "--size", "512", "--rle-size", "512", "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr  # with space, the same sources convert: they were never at fault


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".x_mask.{dead_pid}-{uuid.uuid4().hex[:8]}.tmp.png"
    mine = tmp_path / "sub" / f".y.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.json"
    mine.parent.mkdir()
    stale.write_bytes(b"half")
    mine.write_bytes(b"in progress")
    other = tmp_path / ".not-ours.tmp"
    other.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 1
    assert not stale.exists() and mine.exists() and other.exists()
    stale.write_bytes(b"half")
    prepare_output_dir(tmp_path)  # every command that writes into a folder starts with this
    assert not stale.exists()


# ============================================================== 5. bounded resources


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header declares ``width``×``height`` (a "decompression bomb" header)."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    raw = bytearray(buf.tobytes())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    return path


def test_image_declaring_huge_size_refused_before_decoding(tmp_path, monkeypatch):
    bomb = _png_declaring(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(PtxsegError, match="declares 400,000,000 pixels, more than the 67,108,864-pixel limit") as info:
        read_image(bomb)
    assert info.value.code == "too_large"
    medium = _png_declaring(tmp_path / "medium.png", 9000, 9000)  # under Pillow's own guard, over ptxseg's
    with pytest.raises(PtxsegError, match="9000×9000 = 81,000,000 pixels is more than"):
        read_image(medium)
    fine = tmp_path / "fine.png"
    write_png(fine, np.zeros((300, 200), np.uint8))
    monkeypatch.setenv("PTXSEG_MAX_PIXELS", "50000")  # configurable both ways
    with pytest.raises(PtxsegError, match="PTXSEG_MAX_PIXELS"):
        read_image(fine)
    monkeypatch.setenv("PTXSEG_MAX_PIXELS", "60000")
    assert read_image(fine).shape == (300, 200)
    monkeypatch.setenv("PTXSEG_MAX_PIXELS", "lots")
    with pytest.raises(PtxsegError, match="PTXSEG_MAX_PIXELS: must be a positive integer"):
        read_image(fine)


def test_yaml_alias_bomb_refused(tmp_path):
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[k]
        levels.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    with pytest.raises(PtxsegError, match="anchors and aliases are not allowed"):
        load_config(bomb)
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * (2 * 1024 * 1024))
    with pytest.raises(PtxsegError, match="byte limit"):
        load_config(big)


@pytest.mark.slow
def test_absurd_sizes_refused(tmp_path):
    with pytest.raises(PtxsegError, match="data.size: Input should be less than or equal to 4096"):
        load_config("default", ["data.size=65536"])
    too_big = tmp_path / "big.safetensors"
    shutil.copy(_bundle(tmp_path), too_big)
    card = json.loads((tmp_path / "m.json").read_text())
    card["preprocessing"]["size"] = 100000
    too_big.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(PtxsegError, match="preprocessing.size"):
        Predictor([too_big])
    src = tmp_path / "src"
    write_dicom(src / "1.2.3.dcm", _gradient(256), sop_instance_uid="1.2.3")
    (src / "train-rle.csv").write_text("ImageId,EncodedPixels\n1.2.3,-1\n")
    for value in ("200000", "0"):
        proc = _cli("convert", str(src), str(tmp_path / "out"), "--rle-size", value)
        assert proc.returncode == 2 and "--rle-size: must be between 1 and 16384" in _one_line(proc)
    proc = _cli("evaluate", "--pred", str(src), "--truth", str(src), "--size", "100000")
    assert proc.returncode == 2 and "--size: must be between" in _one_line(proc)


# ============================================================== 6. smaller items


def test_utf8_bom_in_csvs(tmp_path):
    csv = tmp_path / "train-rle.csv"
    csv.write_bytes(b"\xef\xbb\xbfImageId,EncodedPixels\n1.2.3,1 2\n")
    assert read_rle_csv(csv, shape=(4, 4), fmt="relative")["1.2.3"].sum() == 2
    data = tmp_path / "ds"
    synth_dataset(data, 4, size=64, seed=1)
    raw = (data / "manifest.csv").read_bytes()
    (data / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + raw)
    assert list(read_manifest(data).columns)[0] == "id"


def test_rle_integers_too_large_for_the_grid():
    for text in ("1 99999999999999999999999", "9223372036854775807 1", "4611686018427387904 4611686018427387904 1 1"):
        with pytest.raises(PtxsegError, match="RLE value .* too large|RLE overruns") as info:
            rle_decode(text, (1024, 1024), "relative", image_id="1.2.3")
        assert info.value.where == "1.2.3"


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_exif_orientation_applied(tmp_path, orientation):
    from PIL import Image, ImageOps

    left_dark = np.tile(np.linspace(0, 255, 96), (64, 1)).astype(np.uint8)  # a side-dependent image
    left_dark[:16] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(left_dark).save(path, exif=exif.tobytes(), quality=100)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path))).astype(np.float32) / 255
    got = read_image(path)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-6
    if orientation == 2:  # a mirrored photo must not swap the patient's sides
        assert got[32, :10].mean() > got[32, -10:].mean()


def test_tiny_image_is_not_a_radiograph(tmp_path):
    for shape in ((1, 1), (16, 400)):
        path = tmp_path / f"t{shape[0]}.png"
        write_png(path, np.zeros(shape, np.uint8))
        with pytest.raises(PtxsegError, match="too small to be a radiograph") as info:
            load_radiograph(path)
        assert info.value.code == "too_small"
    dicom = write_dicom(tmp_path / "t.dcm", np.zeros((1, 1), np.uint16))
    with pytest.raises(PtxsegError, match="too small"):
        load_radiograph(dicom)


def test_convert_exits_non_zero_when_every_item_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        (src / f"1.2.{k}.dcm").write_bytes(b"DICM" * 50)
    (src / "train-rle.csv").write_text("ImageId,EncodedPixels\n" + "".join(f"1.2.{k},-1\n" for k in range(3)))
    proc = _cli("convert", str(src), str(tmp_path / "out"), "-q")
    assert proc.returncode == 2 and "all 3 source images were refused" in _one_line(proc)
    assert (tmp_path / "out" / "manifest.csv").is_file()  # the reasons are kept


def test_predict_out_inside_an_input_folder_does_not_reingest(tmp_path):
    model = _bundle(tmp_path / "model")
    folder = tmp_path / "in"
    write_png(folder / "x.png", (_gradient() // 16).astype(np.uint8))
    out = folder / "predictions"
    for _ in range(2):
        assert main(["predict", str(model), str(folder), "--out", str(out), "--no-lungs", "-q"]) == 0
        assert len(pd.read_csv(out / "summary.csv")) == 1
    assert gather_inputs([folder], exclude=out) == [folder / "x.png"]


@pytest.mark.slow
def test_set_errors_name_the_option():
    with pytest.raises(PtxsegError, match=r"--set training.batch_size=many: training.batch_size: Input should be a valid integer"):
        load_config("default", ["training.batch_size=many"])
    proc = _cli("train", "--data", "/nonexistent", "--set", "optimizer.lr=-1")
    assert proc.returncode == 2 and "--set optimizer.lr=-1" in _one_line(proc)


def test_unknown_model_kwargs_refused(tmp_path):
    with pytest.raises(PtxsegError, match="unknown argument 'decoder_chanels' for unet"):
        load_config("default", ["model.kwargs={decoder_chanels: [128, 64, 32, 16, 8]}"])
    with pytest.raises(PtxsegError, match="unknown argument"):
        load_config("default", ["model.name=ptxsegnet", "model.kwargs={depth: 3}"])
    assert load_config("default", ["model.kwargs={decoder_channels: [128, 64, 32, 16, 8]}"]).model.kwargs
    with pytest.raises(PtxsegError, match="model.kwargs.*model: cannot build unet with .*decoder_channels"):
        load_config("default", ["model.kwargs={decoder_channels: [128, 64]}"])


def test_augmentation_that_cannot_run_fails_at_validation(tmp_path):
    with pytest.raises(PtxsegError, match="augment: the augmentation pipeline cannot run on a 1024×1024 image"):
        load_config("default", ["augment=[{name: RandomCrop, height: 2048, width: 2048}]"])
    with pytest.raises(PtxsegError, match="augment"):
        load_config("default", ["augment=[{name: GaussNoise, std_range: [0.5, 0.1]}]"])
    # a crop that fits 1024² but not this dataset's 64² images: refused when training starts, before any worker
    data = tmp_path / "ds"
    synth_dataset(data, 8, size=64, seed=2, positive_fraction=0.5)
    cfg = load_config("default", [*TINY, "data.workers=2", "augment=[{name: RandomCrop, height: 96, width: 96}]"])
    with pytest.raises(PtxsegError, match="cannot run on a 64×64 image"):
        train(cfg, data, tmp_path / "run")


@pytest.mark.slow
def test_negative_counts_refused():
    for option in ("--min-case-px=-1", "--bootstrap=-5"):
        proc = _cli("evaluate", "--pred", "a", "--truth", "b", option)
        assert proc.returncode == 2 and option.split("=")[0] in _one_line(proc)


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    import ptxseg.cli.info as info_module

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info_module, "inspect_file", boom)
    assert main(["info", "x.dcm"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ZeroDivisionError: a bug)" in err and "Traceback" not in err


def test_real_dicom_still_reads():
    image, meta, ds = read_radiograph_dataset(shared_path("dicom", "chest_pa_cr_mono1.dcm"))
    assert image.shape == (1955, 1841) and meta.warnings == [] and ds is not None
    assert input_id(shared_path("dicom", "chest_pa_cr_mono1.dcm")) == meta.SOPInstanceUID
    assert math.isfinite(float(image.mean()))


class _MissingImage(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise PtxsegError("ds/images/a.png", "no such file", code="missing")


def test_errors_in_dataloader_workers_keep_their_reason():
    """torch re-raises a worker's exception as a RuntimeError holding its traceback; the CLI shows the original line."""
    from ptxseg.cli import _worker_error

    with pytest.raises(Exception) as info:  # noqa: B017 - torch decides the type
        next(iter(torch.utils.data.DataLoader(_MissingImage(), num_workers=1)))
    assert _worker_error(info.value) == "ds/images/a.png: no such file"
    assert _worker_error(RuntimeError("something else")) is None


def test_a_colour_photograph_is_read_as_its_grey_levels(tmp_path):
    from ptxseg.io.images import read_image

    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), bgr)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255  # OpenCV's luma weights
    assert np.array_equal(read_image(tmp_path / "photo.png"), expected)
    grey3 = np.repeat(bgr[:, :, :1], 3, axis=2)  # a grey image saved as RGB: its one channel, exactly
    cv2.imwrite(str(tmp_path / "grey3.png"), grey3)
    assert np.array_equal(read_image(tmp_path / "grey3.png"), bgr[:, :, 0].astype(np.float32) / 255)


def test_a_float_tiff_and_a_folder_are_refused_with_the_reason(tmp_path):
    from ptxseg.io.images import read_image

    cv2.imwrite(str(tmp_path / "float.tiff"), np.full((64, 64), 0.5, np.float32))
    with pytest.raises(PtxsegError, match=r"float\.tiff: unsupported pixel type float32; expected 8- or 16-bit"):
        read_image(tmp_path / "float.tiff")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(PtxsegError, match="not a regular file"):
        read_image(tmp_path / "folder.png")
