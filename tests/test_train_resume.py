"""Interrupted runs resume to the same numbers; torchrun trains with 2 CPU processes (gloo). Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptxseg.artifacts.checkpoint import load_model
from ptxseg.synth.dataset import synth_dataset

from .serving import free_port

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers

SETS = [
    "data.size=64",
    "model.encoder=resnet18",
    "training.epochs=2",
    "training.batch_size=2",
    "training.val_batch_size=4",
    "data.workers=1",
    "training.checkpoint_every_steps=1",
]
KEYS = ("stage", "epoch", "train_loss", "val_loss", "val_dice", "val_dice_pos", "lr")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "ds"
    synth_dataset(root, 24, size=64, seed=11, positive_fraction=0.4)
    return root


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ptxseg", *args]


def _train_args(data: Path, out: Path) -> list[str]:
    args = ["train", "--data", str(data), "--out", str(out), "-q"]
    for s in SETS:
        args += ["--set", s]
    return args


def _metrics(run: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [tuple(r[k] for k in KEYS) for r in rows]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = subprocess.run(_cmd(*_train_args(data, out)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return _metrics(out)


def _wait_for_mid_epoch_state(run: Path, proc: subprocess.Popen, batch: int) -> None:
    state = run / "state" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if state.is_file() and f'["batch", {batch}]' in state.read_text():
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    raise AssertionError("the run never saved a mid-epoch state")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_interrupted_run_resumes_to_identical_metrics(how, data, reference, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(*_train_args(data, run)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_mid_epoch_state(run, proc, batch=3)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=300)
    if how == "SIGTERM":  # graceful: saves the state at the step in progress and says how to go on
        assert proc.returncode == 143 and f"ptxseg train --resume {run}" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = json.loads((run / "state" / "state.json").read_text())
    assert saved["state"]["__dict__"][0] == ["stage", 0]
    assert not (run / "best.safetensors").exists()  # the run had not finished
    resumed = subprocess.run(_cmd("train", "--resume", str(run), "-q"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(run) == reference  # same losses, Dice and learning rates, epoch by epoch
    load_model(run)


def test_resume_refuses_other_config_and_existing_run(data, tmp_path):
    proc = subprocess.run(_cmd("train", "--resume", str(tmp_path), "-q"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text("{}")
    proc = subprocess.run(_cmd("train", "--data", str(data), "--out", str(tmp_path)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "already holds a run; use --resume" in proc.stderr


def test_torchrun_two_cpu_processes(data, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ptxseg",
        *_train_args(data, run),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # rank 0 alone writes: one line per epoch
    assert all(r["val_images"] == info["val_images"] for r in rows)  # the sharded validation is gathered whole
    assert proc.stdout.count("ptxseg train default:") == 1  # one summary table, from rank 0
    model, card = load_model(run)
    assert card.model.encoder == "resnet18"


def _node(data: Path, run: Path, port: int, rank: int, *train: str) -> subprocess.Popen:
    """One of two torchrun "nodes" on this machine (c10d rendezvous on 127.0.0.1, gloo on the loopback device)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=ptxseg-two-nodes", f"--rdzv_conf=is_host={int(rank == 0)}",
        "--local_addr=127.0.0.1", "--max_restarts=0", "-m", "ptxseg", *(train or _train_args(data, run)),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "best.safetensors"))


def test_torchrun_two_nodes_trains_as_one_node_with_two_processes_and_resumes(data, tmp_path):
    import torch

    single = tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ptxseg"]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    proc = subprocess.run([*cmd, *_train_args(data, single)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two-nodes"
    port = free_port()
    nodes = [_node(data, two, port, rank) for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    assert _metrics(two) == _metrics(single)  # same losses, Dice and learning rates
    a, b = _weights(single), _weights(two)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights
    # interrupted across both nodes (SIGTERM: torchrun passes it on, rank 0 saves the state), resumed on both
    run = tmp_path / "resumed"
    port = free_port()
    nodes = [_node(data, run, port, rank) for rank in (0, 1)]
    _wait_for_mid_epoch_state(run, nodes[0], batch=3)
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    for node in nodes:
        node.communicate(timeout=300)
    assert not (run / "best.safetensors").exists()
    port = free_port()
    nodes = [_node(data, run, port, rank, "train", "--resume", str(run), "-q") for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    assert _metrics(run) == _metrics(two)
    c = _weights(run)
    assert all(torch.equal(b[k], c[k]) for k in b)
