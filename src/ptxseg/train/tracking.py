"""Optional experiment tracking: MLflow (local file store) and TensorBoard.

Neither is a dependency of ptxseg; asking for one that is not installed is a
clear error before training starts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ptxseg.errors import PtxsegError


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
        else:
            out[key] = v
    return out


def _numeric(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool) and v == v}


class MlflowTracker:
    """Params, per-epoch metrics and the run directory's files, in ``RUN_DIR/mlruns`` (a local file store)."""

    def __init__(self) -> None:
        try:
            self.mlflow = importlib.import_module("mlflow")
        except ImportError:
            raise PtxsegError("--mlflow", "mlflow is not installed (pip install mlflow)") from None

    def start(self, cfg, run_dir: Path) -> None:
        self.mlflow.set_tracking_uri((Path(run_dir) / "mlruns").resolve().as_uri())
        self.mlflow.set_experiment("ptxseg")
        self.mlflow.start_run(run_name=Path(run_dir).name)
        params = {k: str(v)[:500] for k, v in _flatten(cfg.model_dump(mode="json")).items()}
        self.mlflow.log_params(params)

    def log_metrics(self, record: dict[str, Any], step: int) -> None:
        self.mlflow.log_metrics(_numeric(record), step=step)

    def log_artifacts(self, run_dir: Path) -> None:
        for name in ("config.yaml", "metrics.jsonl", "curves.png", "best.json"):
            if (Path(run_dir) / name).is_file():
                self.mlflow.log_artifact(str(Path(run_dir) / name))

    def end(self) -> None:
        self.mlflow.end_run()


class TensorboardTracker:
    """Per-epoch scalars in ``RUN_DIR/tensorboard``."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PtxsegError("--tensorboard", "tensorboard is not installed (pip install tensorboard)") from None
        self._writer_cls = SummaryWriter
        self.writer = None

    def start(self, cfg, run_dir: Path) -> None:  # noqa: ARG002
        self.writer = self._writer_cls(str(Path(run_dir) / "tensorboard"))

    def log_metrics(self, record: dict[str, Any], step: int) -> None:
        for k, v in _numeric(record).items():
            self.writer.add_scalar(k, v, step)

    def log_artifacts(self, run_dir: Path) -> None:  # noqa: ARG002
        self.writer.flush()

    def end(self) -> None:
        if self.writer is not None:
            self.writer.close()
