"""Shared fixtures: paths to the real data in ../shared/data and small synthetic DICOMs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores: one compute thread each (and in the processes they start),
    # else OpenMP threads of different workers contend and CPU training slows down tenfold.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared/data is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def siim_csv() -> Path:
    return shared_path("siim", "train-rle.csv.gz")


@pytest.fixture(scope="session")
def siim_masks(siim_csv):
    from ptxseg.io.rle import read_rle_csv

    return read_rle_csv(siim_csv)


@pytest.fixture
def gradient_u16() -> np.ndarray:
    """A 300×280 uint16 ramp: brightness rises to the right (display orientation)."""
    return np.tile(np.linspace(0, 4095, 280), (300, 1)).astype(np.uint16)


def model_card(size: int = 64, name: str = "unet", encoder: str | None = "resnet18", **fields):
    """A model card for tests that save untrained models: stored and network size ``size``, letterbox, min-max."""
    from ptxseg.artifacts.card import Architecture, ModelCard
    from ptxseg.data.preprocess import Preprocessing

    pp = {"stored_size": size, "size": size} | fields.pop("preprocessing", {})
    return ModelCard(model=Architecture(name=name, encoder=encoder), preprocessing=Preprocessing(**pp), **fields)


#: a one-epoch U-Net-R18 at 64²: enough for tests of everything around a trained model
TINY = ["data.size=64", "model.encoder=resnet18", "training.epochs=1", "training.batch_size=4", "data.workers=0"]


#: where :func:`tiny_models` keeps its models for the whole test session (set by :func:`_tiny_model_cache`)
_TINY_CACHE: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _tiny_model_cache(tmp_path_factory) -> Path:
    """One folder per ``pytest`` run shared by all xdist workers (their base folders are siblings), so a tiny model
    is trained once per session whichever worker asks first."""
    global _TINY_CACHE
    base = tmp_path_factory.getbasetemp()
    _TINY_CACHE = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny-models"
    _TINY_CACHE.mkdir(exist_ok=True)
    return _TINY_CACHE


def tiny_models(n: int, seed: int, extra: tuple[str, ...] = (), lungs: bool = False) -> tuple[Path, Path]:
    """``n`` phantoms at 64² and a one-epoch pneumothorax model on them (``extra`` overrides), trained once per test
    session and shared (under a file lock, safe with xdist); with ``lungs`` also a one-epoch lung-field model at
    ``run/lungs``. Returns ``(dataset, run)``; callers that change a model copy it first."""
    import hashlib

    from filelock import FileLock

    from ptxseg.config import load_config
    from ptxseg.synth.dataset import synth_dataset
    from ptxseg.train.engine import train

    assert _TINY_CACHE is not None, "tiny_models needs the session fixture _tiny_model_cache"
    key = f"n{n}-s{seed}" + (f"-{hashlib.sha256(repr(extra).encode()).hexdigest()[:8]}" if extra else "")
    folder = _TINY_CACHE / key
    data, run = folder / "ds", folder / "run"
    with FileLock(str(folder) + ".lock"):
        if not (folder / "trained").is_file():
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # a worker that died half-way
            synth_dataset(data, n, size=64, seed=seed, positive_fraction=0.5)
            train(load_config("default", [*TINY, *extra]), data, run)
            (folder / "trained").touch()
        if lungs and not (folder / "trained-lungs").is_file():
            train(load_config("lungs_unet_r34_256", TINY), data, run / "lungs")
            (folder / "trained-lungs").touch()
    return data, run
