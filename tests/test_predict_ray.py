"""``ptxseg predict --ray`` (issue 30) on real Ray clusters on loopback: the same masks, SEG and JSON as a local
run on real DICOMs; a re-run skips finished inputs; a bad input is a summary row; a Ray worker SIGKILLed mid-run
is retried and every input ends with one set of outputs; a two-node cluster (``ray start --head`` and a second
``ray start`` as separate processes) runs the batch across both nodes, and keeps going when one node is stopped."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.io.images import read_mask
from ptxseg.tasks.predict import predict_batch

from .conftest import shared_path, tiny_models
from .serving import free_port

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'ptxseg[cluster]' (make test installs it)")
pytestmark = pytest.mark.slow  # Ray clusters and trained models

PREDICT = [sys.executable, "-c", "from ptxseg.cli import run; run()", "predict"]
RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's switch: every address 127.0.0.1
# The two-node cluster lives on 127.0.0.2, a loopback address: Ray turns 127.0.0.1 into the machine's network
# address (and its switch that keeps 127.0.0.1 refuses a second node), so every connection stays in 127.0.0.0/8.
# Its processes (head, second node, drivers) share one token (Ray's token authentication).
NODE_IP = "127.0.0.2"
CLUSTER = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


@pytest.fixture(scope="module", autouse=True)
def _ray_starts():
    """Skip, with Ray's own reason, where a Ray cluster cannot start on this machine."""
    probe = "import ray; ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env={**os.environ, **LOOPBACK})
    if done.returncode != 0:
        pytest.skip(f"Ray cannot start here: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(12, seed=41)


def _films(n: int) -> list[Path]:
    return sorted(shared_path("siim", "train_real", "images").glob("*.dcm"))[:n]


def _predict(model: Path, inputs: list[Path], out: Path, *args: str, wait: bool = True):
    cmd = [*PREDICT, str(model), *map(str, inputs), "--out", str(out), "--seg", "-q", *args]
    env = {**os.environ, **(CLUSTER if f"{NODE_IP}:" in " ".join(args) else LOOPBACK)}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("timings_s")
    return doc


def _complete_once(out: Path, ids: list[str]) -> None:
    """Every id has exactly one JSON, mask, overlay and SEG, and nothing half-written is left."""
    for image_id in ids:
        for suffix in (".json", "_mask.png", "_overlay.png", "_seg.dcm"):
            assert (out / f"{image_id}{suffix}").is_file(), (image_id, suffix)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert len(list(out.glob("*.json"))) == len(ids)


def test_ray_gives_the_local_answers_resumes_and_reports_a_bad_input(models, tmp_path):
    _, model = models
    films = [*_films(4), shared_path("dicom", "chest_pa_cr_mono1.dcm")]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"DICM but not really" * 10)
    local = predict_batch(ClinicalPipeline(model), [*films, bad], tmp_path / "local", seg=True)
    run = _predict(model, [*films, bad], tmp_path / "ray", "--ray", "local", "--actors", "2", "--batch-size", "2")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]  # the bad input: exit 1, as locally
    assert "6 inputs: 5 predicted, 0 already complete, 1 failed" in run.stdout
    ids = list(local.loc[local["status"] == "ok", "id"])
    _complete_once(tmp_path / "ray", ids)
    for image_id in ids:
        a, b = tmp_path / "local", tmp_path / "ray"
        assert _doc(a / f"{image_id}.json") == _doc(b / f"{image_id}.json")
        assert np.array_equal(read_mask(a / f"{image_id}_mask.png"), read_mask(b / f"{image_id}_mask.png"))
        sa, sb = pydicom.dcmread(a / f"{image_id}_seg.dcm"), pydicom.dcmread(b / f"{image_id}_seg.dcm")
        assert sa.SOPInstanceUID == sb.SOPInstanceUID and np.array_equal(sa.pixel_array, sb.pixel_array)
    summaries = [pd.read_csv(p / "summary.csv").drop(columns="seconds") for p in (tmp_path / "local", tmp_path / "ray")]
    pd.testing.assert_frame_equal(*summaries)
    again = _predict(model, films, tmp_path / "ray", "--ray", "local", "--actors", "1")
    assert again.returncode == 0 and "5 inputs: 0 predicted, 5 already complete" in again.stdout, again.stderr[-2000:]


def _ray_workers(root: int) -> list[int]:
    """The Ray worker processes running the actor, among the descendants of ``root`` (the driver started this
    cluster: its raylet and workers are its descendants, a parallel test's are not)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    procs = [(int(pid), int(ppid), " ".join(args)) for pid, ppid, *args in (line.split() for line in out)]
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid, _ in procs:
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return [pid for pid, _, args in procs if pid in family and "PredictActor" in args and "ray::" in args]


def test_a_ray_worker_killed_mid_run_is_retried_and_nothing_is_lost(models, tmp_path):
    _, model = models
    films = _films(10)
    proc = _predict(model, films, tmp_path / "out", "--ray", "local", "--actors", "1", "--batch-size", "1", wait=False)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "out").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _ray_workers(proc.pid)
    assert workers, "no Ray worker process running the actor"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, text[-3000:]
    # an input the killed actor had finished is found complete when its batch is retried: skipped, not redone
    counts = re.search(r"10 inputs: (\d+) predicted, (\d+) already complete, 0 failed", text)
    assert counts and int(counts[1]) + int(counts[2]) == 10, text[-2000:]
    assert "will be retried" in text  # Ray saw the actor die and retried its task
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    _complete_once(tmp_path / "out", list(table["id"]))
    assert set(table["status"]) <= {"ok", "skipped"} and len(table) == 10


class RayNode:
    """``ray start --block`` as a process of its own (head, or joining ``address``), 1 CPU, on :data:`NODE_IP`."""

    def __init__(self, root: Path, port: int | None = None, address: str | None = None) -> None:
        args = ["--head", "--port", str(port), "--include-dashboard=false"] if address is None else ["--address", address]
        cmd = [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", NODE_IP, "--disable-usage-stats", *args]
        root.mkdir(parents=True, exist_ok=True)
        self.log = open(root / "ray.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **CLUSTER})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _wait_nodes(address: str, n: int) -> None:
    probe = "import ray; ray.init(address='{0}', log_to_driver=False); print(sum(x['Alive'] for x in ray.nodes()))"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        env = {**os.environ, **CLUSTER}
        out = subprocess.run([sys.executable, "-c", probe.format(address)], capture_output=True, text=True, env=env)
        if out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster did not reach {n} nodes")


@pytest.mark.skipif(RAY is None, reason="needs the ray command (pip install 'ptxseg[cluster]')")
def test_a_two_node_cluster_shares_the_batch_and_survives_losing_a_node(models, tmp_path):
    _, model = models
    port = free_port()
    address = f"{NODE_IP}:{port}"
    head = RayNode(tmp_path / "head", port=port)
    second = None
    try:
        _wait_nodes(address, 1)
        second = RayNode(tmp_path / "second", address=address)
        _wait_nodes(address, 2)
        films = _films(8)
        run = _predict(model, films, tmp_path / "both", "--ray", address, "--actors", "2", "--batch-size", "1")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"Ray: 2 node(s) ran the actors ({NODE_IP}, {NODE_IP})" in run.stdout + run.stderr
        _complete_once(tmp_path / "both", list(pd.read_csv(tmp_path / "both" / "summary.csv")["id"]))
        # the shared-OUT check (it passed above: both nodes see tmp_path) names the nodes that cannot see a folder
        probe = (
            "import ray, pathlib; from ptxseg.cluster.ray_cluster import nodes_missing; "
            f"ray.init(address='{address}', log_to_driver=False); print(nodes_missing(ray, pathlib.Path('{tmp_path}/absent')))"
        )
        seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **CLUSTER})
        assert seen.stdout.strip().splitlines()[-1] == str([NODE_IP, NODE_IP]), seen.stderr[-2000:]
        proc = _predict(model, films, tmp_path / "one-lost", "--ray", address, "--actors", "2", "--batch-size", "1", wait=False)
        deadline = time.monotonic() + 300
        while not list((tmp_path / "one-lost").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        second.stop()  # the second node goes away mid-run: its work is retried on the head
        text, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, text[-3000:]
        table = pd.read_csv(tmp_path / "one-lost" / "summary.csv")
        assert (table["status"] == "ok").all() and len(table) == 8
        _complete_once(tmp_path / "one-lost", list(table["id"]))
    finally:
        if second is not None:
            second.stop()
        head.stop()
