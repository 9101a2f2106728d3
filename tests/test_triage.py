"""``ptxseg triage`` against a real Orthanc (started by the tests on free loopback ports): real DICOMs from
../shared/data and phantoms written as DICOM go in; one SEG, one SC and one SR per eligible radiograph come back,
each referencing its source and valid (dciodvfy); findings as metadata; the worklist in triage order; and exactly
once through a re-run, a new model version, kill -9 of the worker and a restart of Orthanc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import highdicom as hd
import pandas as pd
import pydicom
import pytest

from ptxseg.io.dicom import write_dicom

from .conftest import shared_path, tiny_models
from .dicomcheck import DCIODVFY, dciodvfy_errors
from .orthanc import PASSWORD, USER, Orthanc, needs_orthanc

pytestmark = [pytest.mark.slow, needs_orthanc]

REAL = ["dicom/chest_pa_cr_mono1.dcm", "siim/real_sample/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"]
TRIAGE = [sys.executable, "-c", "from ptxseg.cli import run; run()", "triage"]
SEG, SR3D = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(12, seed=41)


def _env() -> dict[str, str]:
    return {**os.environ, "PTXSEG_ORTHANC_USER": USER, "PTXSEG_ORTHANC_PASSWORD": PASSWORD}


def _triage(orthanc: Orthanc, model: Path, work: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    (work / "triage.yaml").write_text(f"work_dir: {work}\npoll_s: 0.2\nretry_s: 0.2\nmax_backoff_s: 1\n")
    cmd = [*TRIAGE, "--orthanc", orthanc.url, str(model), "--config", str(work / "triage.yaml"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def _phantoms(data: Path, folder: Path, n: int, first: int = 0, **kw) -> list[Path]:
    """``n`` phantoms of the tiny dataset written as DICOM CR (64², 4 mm pixels), two patients, one study each."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = pd.read_csv(data / "manifest.csv", dtype={"id": str})["id"]
    out = []
    for k in range(first, first + n):
        pixels = cv2.imread(str(data / "images" / f"{ids[k % len(ids)]}.png"), cv2.IMREAD_GRAYSCALE)
        patient = k % 2
        out.append(
            write_dicom(
                folder / f"ph{k}.dcm", pixels, sop_instance_uid=f"1.2.826.0.1.3680043.8.498.61.{k + 1}",
                study_instance_uid=f"1.2.826.0.1.3680043.8.498.62.{patient + 1}",
                series_instance_uid=f"1.2.826.0.1.3680043.8.498.63.{patient + 1}",
                patient_id=f"PHANTOM{patient}", pixel_spacing=(4.0, 4.0), **kw,
            )
        )  # fmt: skip
    return out


def derived_by_source(orthanc: Orthanc) -> dict[str, Counter]:
    """Source SOP Instance UID → how many SEG, SC and SR ptxseg stored for it."""
    out: dict[str, Counter] = {}
    tags = {i: orthanc.tags(i) for i in orthanc.instances()}
    segs = {t["SOPInstanceUID"] for t in tags.values() if t.get("SOPClassUID") == SEG}
    for t in tags.values():
        if t.get("Manufacturer") != "ptxseg":
            continue
        if t["SOPClassUID"] == SEG:
            kind, refs = (
                "SEG",
                [r["ReferencedSOPInstanceUID"] for s in t["ReferencedSeriesSequence"] for r in s["ReferencedInstanceSequence"]],
            )
        elif t["SOPClassUID"] == SR3D:
            evidence = t["CurrentRequestedProcedureEvidenceSequence"]
            kind = "SR"
            refs = [
                r["ReferencedSOPInstanceUID"]
                for e in evidence
                for s in e["ReferencedSeriesSequence"]
                for r in s["ReferencedSOPSequence"]
            ]
            refs = [r for r in refs if r not in segs]
        else:
            kind, refs = "SC", [r["ReferencedSOPInstanceUID"] for r in t["SourceImageSequence"]]
        assert len(refs) == 1, (kind, refs)
        out.setdefault(refs[0], Counter())[kind] += 1
    return out


@pytest.fixture(scope="module")
def triaged(models, tmp_path_factory):
    """One Orthanc holding: the real MONOCHROME1 CR and the real SIIM DICOM, three phantom PA radiographs, a
    lateral phantom, one labelled ABDOMEN, one labelled CT and a CR whose pixel data is cut short; then
    ``ptxseg triage --once``."""
    data, model = models
    root = tmp_path_factory.mktemp("orthanc")
    orthanc = Orthanc(root / "orthanc")
    files = [shared_path(p) for p in REAL] + _phantoms(data, root / "in", 3)
    lateral = _phantoms(data, root / "lat", 1, first=3, view_position="LL")[0]
    abdomen = _phantoms(data, root / "abdomen", 1, first=6, body_part="ABDOMEN")[0]
    ct = _phantoms(data, root / "ct", 1, first=4, modality="CT")[0]
    broken = _phantoms(data, root / "broken", 1, first=5)[0]
    ds = pydicom.dcmread(broken)
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(broken)
    sops = {}
    for f in [*files, lateral, abdomen, ct, broken]:
        orthanc.upload(Path(f).read_bytes())
        sops[Path(f).name] = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
    work = root / "work"
    work.mkdir()
    result = _triage(orthanc, model, work, "--once")
    yield {"orthanc": orthanc, "model": model, "work": work, "result": result, "sops": sops, "eligible": [Path(f).name for f in files]}
    orthanc.stop()


def test_the_worker_reports_what_it_did(triaged):
    r = triaged["result"]
    assert r.returncode == 0, r.stderr
    counts = dict(part.split(": ") for part in r.stdout.strip().split(", "))
    assert counts["analysed"] == "5" and counts["not-triaged"] == "2" and counts["error"] == "1"
    assert "PHANTOM" not in r.stderr and "chest_pa" not in r.stderr  # no patient identifiers in the log


def test_each_eligible_radiograph_gets_one_seg_one_sc_and_one_sr_referencing_it(triaged):
    derived = derived_by_source(triaged["orthanc"])
    wanted = {triaged["sops"][name] for name in triaged["eligible"]}
    assert set(derived) == wanted
    assert all(c == Counter({"SEG": 1, "SC": 1, "SR": 1}) for c in derived.values()), derived


def test_the_derived_objects_read_back_and_are_valid_dicom(triaged, tmp_path):
    orthanc = triaged["orthanc"]
    mine = [i for i in orthanc.instances() if orthanc.tags(i).get("Manufacturer") == "ptxseg"]
    assert len(mine) == 15
    for i in mine:
        path = tmp_path / f"{i}.dcm"
        path.write_bytes(orthanc.get(f"/instances/{i}/file").content)
        ds = pydicom.dcmread(path)
        if ds.SOPClassUID == SEG:
            seg = hd.seg.segread(path)
            assert seg.get_segment_description(1).segment_label == "Pneumothorax"
        elif ds.SOPClassUID == SR3D:
            sr = hd.sr.srread(path)
            assert sr.content.get_image_measurement_groups()  # the probability is reported
        else:
            assert ds.BurnedInAnnotation == "YES" and ds.pixel_array.ndim == 3
        if DCIODVFY:
            assert dciodvfy_errors(path) == [], (ds.SOPClassUID, i)


def test_findings_and_reasons_are_stored_as_metadata(triaged):
    orthanc, sops = triaged["orthanc"], triaged["sops"]
    by_sop = {orthanc.tags(i)["SOPInstanceUID"]: orthanc.metadata(i) for i in orthanc.instances()}
    for name in triaged["eligible"]:
        meta = by_sop[sops[name]]
        assert meta["ptxseg-status"] == "analysed"
        assert 0 <= float(meta["ptxseg-probability"]) <= 1 and meta["ptxseg-priority"] in "1234"
        assert meta["ptxseg-severity"] in ("none", "mild", "moderate", "severe", "unknown") and meta["ptxseg-model"].startswith(
            "ptxseg "
        )
        assert meta["ptxseg-qc"]
    assert by_sop[sops["ph3.dcm"]]["ptxseg-status"] == "not-triaged: the header says this is not a frontal (PA/AP) view"
    assert by_sop[sops["ph6.dcm"]]["ptxseg-status"] == "not-triaged: the header names a body part other than the chest"
    assert by_sop[sops["ph5.dcm"]]["ptxseg-status"].startswith("error: ")
    assert "ptxseg-status" not in by_sop[sops["ph4.dcm"]]  # a CT is not looked at


def test_the_worklist_lists_studies_in_triage_order(triaged):
    orthanc = triaged["orthanc"]
    cmd = [*TRIAGE, "worklist", "--orthanc", orthanc.url, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["studies"]
    assert len(rows) == 4  # the real CR's study, the SIIM study, two phantom patients' studies
    # a study's row is its most urgent radiograph: the phantom studies hold analysed and not-triaged ones
    assert all(row["status"] == "analysed" for row in rows)
    analysed = [row for row in rows if row["status"] == "analysed"]
    keys = [(row["priority"], -row["probability"], row["received"]) for row in analysed]
    assert keys == sorted(keys) and rows[: len(analysed)] == analysed
    text = subprocess.run([*TRIAGE, "worklist", "--orthanc", orthanc.url], capture_output=True, text=True, timeout=120, env=_env())
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 1 + len(rows)


def test_a_rerun_replaces_and_a_new_model_version_adds(triaged, tmp_path):
    orthanc, model = triaged["orthanc"], triaged["model"]
    before = sorted(orthanc.instances())
    (triaged["work"] / "state.json").unlink()  # the worker forgot where it was: everything is seen again
    again = _triage(orthanc, model, triaged["work"], "--once")
    assert again.returncode == 0, again.stderr
    assert sorted(orthanc.instances()) == before and set(derived_by_source(orthanc)) == {
        triaged["sops"][n] for n in triaged["eligible"]
    }
    # another model (new weights → new version) adds its own results beside the first model's
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    subprocess.run(["cp", "-r", str(model), str(other)], check=True)
    weights = load_file(other / "best.safetensors")
    name = next(k for k, v in weights.items() if v.dtype.kind == "f" and v.ndim)
    weights[name] = weights[name] + 1e-6
    save_file(weights, other / "best.safetensors")
    third = _triage(orthanc, other, tmp_path / "work-other", "--once")
    assert third.returncode == 0, third.stderr
    counts = derived_by_source(orthanc)
    assert all(c == Counter({"SEG": 2, "SC": 2, "SR": 2}) for c in counts.values()), counts


def _wait_analysed(orthanc: Orthanc, ids: list[str], at_least: int, timeout: float = 180) -> int:
    """Wait until at least ``at_least`` of the Orthanc instances ``ids`` are analysed; returns how many are."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(orthanc.metadata(i).get("ptxseg-status") == "analysed" for i in ids)
        if done >= at_least:
            return done
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} analysed within {timeout} s")


def _follow(orthanc: Orthanc, model: Path, work: Path) -> subprocess.Popen:
    (work / "triage.yaml").write_text(f"work_dir: {work}\npoll_s: 0.2\nretry_s: 0.2\nmax_backoff_s: 1\n")
    cmd = [*TRIAGE, "--orthanc", orthanc.url, str(model), "--config", str(work / "triage.yaml")]
    # stderr to a file: a test can watch the worker's log while it runs (no fixed sleeps)
    with (work / "worker.log").open("w") as log:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=_env())


def _finish(worker: subprocess.Popen, work: Path) -> str:
    """SIGTERM the worker, wait for it, and return its log."""
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=120)
    return (work / "worker.log").read_text()


def _wait_for_log(work: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (work / "worker.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in (work / "worker.log").read_text(), (work / "worker.log").read_text()[-2000:]


def test_kill_9_mid_stream_then_a_restart_loses_and_doubles_nothing(models, tmp_path):
    data, model = models
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        files = _phantoms(data, tmp_path / "in", 16)
        sops = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
        ids = [orthanc.upload(f.read_bytes()) for f in files]
        work = tmp_path / "work"
        work.mkdir()
        worker = _follow(orthanc, model, work)
        done = _wait_analysed(orthanc, ids, 1)
        worker.kill()  # kill -9: no chance to finish anything
        worker.wait(timeout=120)
        assert done < len(sops), "the worker finished before it could be killed mid-stream"
        again = _triage(orthanc, model, work, "--once")
        assert again.returncode == 0, again.stderr
        derived = derived_by_source(orthanc)
        assert set(derived) == sops and all(c == Counter({"SEG": 1, "SC": 1, "SR": 1}) for c in derived.values()), derived
    finally:
        orthanc.stop()


def test_orthanc_restarting_mid_stream_and_sigterm_leave_everything_done_once(models, tmp_path):
    data, model = models
    orthanc = Orthanc(tmp_path / "orthanc")
    worker = None
    try:
        first = _phantoms(data, tmp_path / "in", 4)
        later = _phantoms(data, tmp_path / "later", 3, first=4)
        sops = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in first + later}
        ids = [orthanc.upload(f.read_bytes()) for f in first]
        work = tmp_path / "work"
        work.mkdir()
        worker = _follow(orthanc, model, work)
        _wait_analysed(orthanc, ids, 1)
        orthanc.stop()  # the PACS goes away under the worker
        _wait_for_log(work, "retry")  # it noticed and waits, instead of crashing
        orthanc.start()  # and comes back with the same storage
        ids += [orthanc.upload(f.read_bytes()) for f in later]
        _wait_analysed(orthanc, ids, len(ids))
        err = _finish(worker, work)
        assert worker.returncode == 0, err
        assert "retry" in err  # it waited for Orthanc instead of crashing
        derived = derived_by_source(orthanc)
        assert set(derived) == sops and all(c == Counter({"SEG": 1, "SC": 1, "SR": 1}) for c in derived.values()), derived
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        orthanc.stop()


def test_wrong_credentials_and_bad_settings_are_one_line(models, tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        cmd = [*TRIAGE, "--orthanc", orthanc.url, str(models[1]), "--once"]
        env = {**os.environ, "PTXSEG_ORTHANC_USER": USER, "PTXSEG_ORTHANC_PASSWORD": "wrong"}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "401" in r.stderr and "credentials" in r.stderr
        (tmp_path / "bad.yaml").write_text("poll_s: -1\nnot_a_setting: 3\n")
        r = subprocess.run([*cmd, "--config", str(tmp_path / "bad.yaml")], capture_output=True, text=True, timeout=120, env=_env())
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "poll_s" in r.stderr and "not_a_setting: unknown key" in r.stderr
        (tmp_path / "creds").write_text("no-colon-here\n")
        r = subprocess.run([*cmd, "--credentials", str(tmp_path / "creds")], capture_output=True, text=True, timeout=120, env=_env())
        assert r.returncode == 2 and "user:password" in r.stderr
    finally:
        orthanc.stop()


def test_sigterm_finishes_the_radiograph_in_progress_and_leaves_nothing_half_stored(models, tmp_path):
    data, model = models
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        files = _phantoms(data, tmp_path / "in", 12)
        ids = [orthanc.upload(f.read_bytes()) for f in files]
        work = tmp_path / "work"
        work.mkdir()
        worker = _follow(orthanc, model, work)
        _wait_analysed(orthanc, ids, 1)
        err = _finish(worker, work)  # SIGTERM mid-stream: more radiographs are waiting
        assert worker.returncode == 0, err
        analysed = {orthanc.tags(i)["SOPInstanceUID"] for i in ids if orthanc.metadata(i).get("ptxseg-status") == "analysed"}
        assert 1 <= len(analysed) < len(ids)  # it stopped early ...
        derived = derived_by_source(orthanc)
        # ... and every radiograph it touched is whole: all three objects and its metadata, or nothing at all
        assert set(derived) == analysed and all(c == Counter({"SEG": 1, "SC": 1, "SR": 1}) for c in derived.values())
        state = json.loads((work / "state.json").read_text())
        assert state["last_change"] > 0  # where it stopped is recorded, so a restart goes on from there
    finally:
        orthanc.stop()
