"""The run directory: everything needed to understand, reproduce and resume a training run.

::

    RUN_DIR/
      config.yaml        the resolved config (every field explicit)
      run.json           dataset, fold, world size, command line
      env.json           versions, platform, devices, ptxseg git commit
      metrics.jsonl      one JSON object per epoch
      train.log          the log
      curves.png         loss and validation Dice per epoch
      best.safetensors   the final model (+ best.json: metadata and tuned operating point)
      checkpoints/       per-stage best, top-k and snapshot weights (+ .json)
      state/             the resume state (see ptxseg.artifacts.checkpoint.save_state)

Only rank 0 of a distributed run writes.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import albumentations
import numpy
import segmentation_models_pytorch
import timm
import torch

import ptxseg
from ptxseg.clinical.render import training_curves
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import write_text_atomic
from ptxseg.io.jsonfile import dumps, loads, read_json_object


@dataclass(frozen=True)
class ResumeTarget:
    """What ``--resume RUN_DIR`` continues: the run's own config file, dataset and validation fold."""

    config: Path
    dataset: Path
    fold: int


def resume_target(run_dir: Path) -> ResumeTarget:
    """Check that ``run_dir`` is a run directory and read what resuming it needs.

    Raises:
        PtxsegError: no ``run.json``/``config.yaml``, or a ``run.json`` without the dataset path and fold.
    """
    run_json = run_dir / "run.json"
    if not run_json.is_file() or not (run_dir / "config.yaml").is_file():
        raise PtxsegError(run_dir, "not a run directory (no run.json/config.yaml)")
    info = read_json_object(run_json)
    if not isinstance(info.get("dataset"), str) or not isinstance(info.get("fold"), int):
        raise PtxsegError(run_json, "lacks the dataset path and fold of the run")
    return ResumeTarget(run_dir / "config.yaml", Path(info["dataset"]), info["fold"])


def check_new_run(run_dir: Path, dataset: Path) -> None:
    """Refuse to start a run over another run's resume state, or on a folder that is not a ptxseg dataset."""
    if (run_dir / "state" / "state.json").is_file():
        raise PtxsegError(run_dir, "already holds a run; use --resume to continue it or choose another --out")
    check_dataset(dataset)


def check_dataset(dataset: Path) -> None:
    """Refuse a folder without a ``manifest.csv``."""
    if not (dataset / "manifest.csv").is_file():
        raise PtxsegError(dataset, "not a ptxseg dataset (no manifest.csv)")


def default_run_dir(name: str, fold: int) -> Path:
    """``runs/NAME-foldK-YYYYmmdd-HHMMSS``."""
    return Path("runs") / f"{name}-fold{fold}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def git_commit() -> dict[str, Any]:
    """The commit of the ptxseg source tree (and whether it has uncommitted changes), when it is a git checkout."""
    src = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def environment() -> dict[str, Any]:
    """Versions and hardware a result depends on."""

    return {
        "ptxseg": ptxseg.__version__,
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
        "timm": timm.__version__,
        "albumentations": albumentations.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "argv": sys.argv,
    }


class RunDir:
    """Writers for one run directory; a no-op on ranks other than 0."""

    def __init__(self, path: str | PathLike[str], writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self.logger = logging.getLogger(f"ptxseg.train.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.path / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.logger.addHandler(handler)

    def log(self, message: str) -> None:
        if self.writer:
            self.logger.info(message)

    def close(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)

    def write_json(self, name: str, obj: Any) -> None:
        if self.writer:
            write_text_atomic(self.path / name, dumps(obj, indent=2))

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            write_text_atomic(self.path / name, text)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def history(self) -> list[dict[str, Any]]:
        """The epoch records written so far (a value that was NaN, e.g. Dice on positives of a fold without any,
        is stored as JSON ``null`` and read back as NaN)."""
        if not self.metrics_path.is_file():
            return []
        lines = [ln for ln in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        records = []
        for k, line in enumerate(lines):
            try:
                records.append(loads(line, self.metrics_path))
            except PtxsegError:
                if k == len(lines) - 1:  # the append in progress when a run was killed: that epoch is re-done
                    break
                raise
        return [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in records]

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writer:
            with self.metrics_path.open("a") as f:
                f.write(dumps(record) + "\n")

    def truncate_history(self, keep) -> None:
        """Keep only the records for which ``keep(record)`` is true (a resumed run re-does later epochs)."""
        if self.writer and self.metrics_path.is_file():
            kept = [r for r in self.history() if keep(r)]
            write_text_atomic(self.metrics_path, "".join(dumps(r) + "\n" for r in kept))

    def plot_curves(self) -> Path | None:
        """``curves.png``: training/validation loss and validation Dice per epoch."""
        hist = self.history()
        if not self.writer or not hist:
            return None
        return training_curves(hist, self.path / "curves.png", self.path.name)
