"""A film that kills the triage worker, and a kill between two stores (issue 26), against a real Orthanc: the
worker records each start of a radiograph durably, gives it up after ``max_attempts`` starts that did not finish
(``error: gave up after N attempts``) and goes on with the rest; killed between storing the SEG and the SR, a
restart leaves exactly one SEG, SC and SR. The kills are real SIGKILLs at fixed points (``PTXSEG_TRIAGE_FAULT``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter

import pydicom
import pytest

from ptxseg.errors import PtxsegError
from ptxseg.io.names import hashed_uid
from ptxseg.pacs.state import FeedState

from .conftest import tiny_models
from .orthanc import Orthanc, needs_orthanc
from .test_triage import TRIAGE, _env, _phantoms, derived_by_source

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(12, seed=41)


def _run(orthanc: Orthanc, model, work, fault: str | None = None, attempts: int = 3) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    (work / "triage.yaml").write_text(f"work_dir: {work}\npoll_s: 0.2\nretry_s: 0.2\nmax_backoff_s: 1\nmax_attempts: {attempts}\n")
    env = _env() | ({"PTXSEG_TRIAGE_FAULT": fault} if fault else {})
    cmd = [*TRIAGE, "--orthanc", orthanc.url, str(model), "--config", str(work / "triage.yaml"), "--once"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _sop(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@needs_orthanc
def test_a_film_that_kills_the_worker_is_given_up_after_three_attempts_and_the_rest_is_triaged(models, tmp_path):
    data, model = models
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        poison, good = _phantoms(data, tmp_path / "in", 2)
        poison_id, good_id = (orthanc.upload(f.read_bytes()) for f in (poison, good))
        fault = f"analysis@{hashed_uid(_sop(poison))}"
        work = tmp_path / "work"
        for attempt in range(3):
            killed = _run(orthanc, model, work, fault)
            assert killed.returncode == -signal.SIGKILL, (attempt, killed.returncode, killed.stderr[-500:])
            assert json.loads((work / "state.json").read_text())["in_progress"][1] == attempt + 1
        final = _run(orthanc, model, work, fault)  # the same fault is still there: the film is not started again
        assert final.returncode == 0, final.stderr[-1000:]
        assert orthanc.metadata(poison_id)["ptxseg-status"] == "error: gave up after 3 attempts"
        assert orthanc.metadata(good_id)["ptxseg-status"] == "analysed"
        assert derived_by_source(orthanc) == {_sop(good): Counter({"SEG": 1, "SC": 1, "SR": 1})}
        assert "in_progress" not in json.loads((work / "state.json").read_text())
    finally:
        orthanc.stop()


@needs_orthanc
def test_a_kill_between_storing_the_seg_and_the_sr_leaves_exactly_one_of_each_after_a_restart(models, tmp_path):
    data, model = models
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        (film,) = _phantoms(data, tmp_path / "in", 1)
        orthanc.upload(film.read_bytes())
        work = tmp_path / "work"
        killed = _run(orthanc, model, work, f"between-stores@{hashed_uid(_sop(film))}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-500:]
        assert derived_by_source(orthanc) == {_sop(film): Counter({"SEG": 1})}  # the kill fell between two stores
        again = _run(orthanc, model, work)
        assert again.returncode == 0, again.stderr[-1000:]
        assert derived_by_source(orthanc) == {_sop(film): Counter({"SEG": 1, "SC": 1, "SR": 1})}
    finally:
        orthanc.stop()


def test_the_state_counts_starts_durably_and_refuses_a_malformed_count(tmp_path):
    path = tmp_path / "state.json"
    state = FeedState.load(path, "http://127.0.0.1:1")
    assert state.attempt(7) == 1 and state.attempt(7) == 2
    assert FeedState.load(path, "http://127.0.0.1:1").attempt(7) == 3  # survives a restart
    state.advance(7)
    assert FeedState.load(path, "http://127.0.0.1:1").in_progress is None
    assert state.attempt(9) == 1
    doc = json.loads(path.read_text())
    for bad in (["9"], [9, -1], "x", [1, 2, 3]):
        path.write_text(json.dumps({**doc, "in_progress": bad}))
        with pytest.raises(PtxsegError, match="in_progress"):
            FeedState.load(path, "http://127.0.0.1:1")
    os.remove(path)
