"""The triage worker's settings (``--config triage.yaml``, validated by pydantic) and its Orthanc credentials.

Credentials never come from the command line (they would show in ``ps`` and shell history): a file holding one
line ``user:password`` (``credentials_file`` here, or ``--credentials FILE``), else the environment variables
``PTXSEG_ORTHANC_USER`` and ``PTXSEG_ORTHANC_PASSWORD``, else none.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ptxseg.io.settings import read_credentials as read_settings_credentials
from ptxseg.io.settings import read_settings

ENV_USER, ENV_PASSWORD = "PTXSEG_ORTHANC_USER", "PTXSEG_ORTHANC_PASSWORD"


class TriageSettings(BaseModel):
    """Every setting of ``ptxseg triage``; a YAML file may give any of them (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    work_dir: Path = Field(Path("ptxseg-triage"), description="the worker's own folder: state and scratch files")
    modalities: list[str] = Field(["CR", "DX"], min_length=1, description="modalities analysed")
    poll_s: float = Field(2.0, gt=0, le=3600, description="seconds between looks at the change feed when idle")
    batch: int = Field(100, ge=1, le=1000, description="changes read per request")
    retry_s: float = Field(0.5, gt=0, le=60, description="first wait after a failed request; doubles")
    max_backoff_s: float = Field(30.0, gt=0, le=3600, description="longest wait between retries")
    give_up_s: float = Field(600.0, gt=0, description="how long Orthanc may stay unreachable before the worker stops")
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="starts of one radiograph's analysis before it is recorded as given up (a film that kills the worker)",
    )
    credentials_file: Path | None = Field(None, description="file with one line user:password")
    lungs: Path | None = Field(None, description="lung-field model (default: MODEL/lungs, else the shipped one)")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads")


def load_settings(path: str | PathLike[str] | None) -> TriageSettings:
    """The settings of ``path`` (YAML), or the defaults without one; one-line :class:`PtxsegError` on a bad file."""
    return read_settings(path, TriageSettings, "triage settings")


def read_credentials(path: str | PathLike[str] | None) -> tuple[str, str] | None:
    """(user, password) from ``path`` (one line ``user:password``), else from the environment, else None."""
    return read_settings_credentials(path, ENV_USER, ENV_PASSWORD)
