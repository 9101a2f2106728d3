"""``ptxseg predict --ray``: the same clinical pipeline and the same per-input writers as a local ``ptxseg
predict``, run by a Ray Data pipeline.

The inputs (paths and their ids, listed here) become a dataset; ``map_batches`` runs them through an actor pool in
which each actor loads the models once. An actor writes each input's files exactly as the local run does
(:func:`ptxseg.tasks.predict.write_outputs`: temporary names, renamed, the JSON last), skips an input whose stored
outputs are complete (resume), and turns a bad input into an error row; its summary rows come back here and
``summary.csv`` is written at the end. Ray restarts an actor whose process died and retries its batch, so every
input still ends with one set of outputs (a retried input rewrites the same files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptxseg.clinical.inputs import load_radiograph, unique_ids
from ptxseg.cluster.ray_cluster import alive_nodes, check_shared, connect
from ptxseg.errors import PtxsegError
from ptxseg.io.atomic import prepare_output_dir
from ptxseg.io.jsonfile import dumps
from ptxseg.tasks.predict import complete_outputs, summary_row, write_outputs, write_summary


@dataclass(kw_only=True)
class RaySettings:
    """How the actor pool is laid out: ``actors`` actors of ``cpus`` CPUs and ``gpus`` GPUs each, ``batch_size``
    inputs per call (default: one actor per CPU of the cluster, 1 CPU each, batches of 4)."""

    address: str = "local"
    actors: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise PtxsegError("--actors", f"must be at least 1, got {self.actors}")
        if not self.cpus > 0 or self.gpus < 0:
            raise PtxsegError("--cpus-per-actor/--gpus-per-actor", "need CPUs > 0 and GPUs >= 0")
        if self.batch_size < 1:
            raise PtxsegError("--batch-size", f"must be at least 1, got {self.batch_size}")


@dataclass(kw_only=True)
class RayRun:
    """A finished ``--ray`` batch: the summary table, the nodes the actors ran on, Ray's start-up time (s)."""

    table: pd.DataFrame
    nodes: list[str] = field(default_factory=list)
    startup_s: float = 0.0


class PredictActor:
    """One actor of the pool: the clinical pipeline, loaded once; ``__call__`` analyses a batch of inputs."""

    def __init__(self, model: str, out: str, pipeline: dict[str, Any], seg: bool, overlay: bool, cam: bool) -> None:
        import ray

        from ptxseg.clinical.pipeline import ClinicalPipeline

        self.pipeline = ClinicalPipeline(model, **pipeline)
        self.out, self.seg, self.overlay, self.cam = Path(out), seg, overlay, cam
        p = self.pipeline
        self.models = (p.model_info["version"], (p.lung_info or {}).get("version"), list(p.warnings))
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        triples = zip(batch["index"], batch["path"], batch["id"], strict=True)
        rows = [self._one(int(i), Path(str(path)), str(image_id)) for i, path, image_id in triples]
        return {"row": np.array([json.dumps(r, default=str) for r in rows], dtype=object)}

    def _one(self, index: int, path: Path, image_id: str) -> dict:
        done = complete_outputs(self.out, image_id, self.seg, self.overlay, self.cam, self.models)
        if done is not None:
            return self._tag(index, summary_row(path, image_id, "skipped", "complete outputs from an earlier run", done, None))
        t0 = time.perf_counter()
        try:
            rad = load_radiograph(path)
            doc, _ = write_outputs(self.pipeline, rad, image_id, self.out, self.seg, self.overlay, self.cam)
        except PtxsegError as exc:
            return self._tag(index, summary_row(path, image_id, "error", exc.reason, None, None))
        except OSError:
            raise  # the output folder's problem (ENOSPC, EROFS …), not the input's: the job stops
        except Exception as exc:  # noqa: BLE001 - one input's unexpected failure never stops the batch
            reason = f"analysis failed ({type(exc).__name__}: {str(exc)[:200]})"
            return self._tag(index, summary_row(path, image_id, "error", reason, None, None))
        return self._tag(index, summary_row(path, image_id, "ok", "", json.loads(dumps(doc)), time.perf_counter() - t0))

    def _tag(self, index: int, row: dict) -> dict:
        return row | {"_index": index, "_node": self.node}


def predict_on_ray(
    model: str | PathLike[str],
    inputs: list[Path],
    out: str | PathLike[str],
    settings: RaySettings,
    *,
    pipeline: dict[str, Any] | None = None,
    seg: bool = False,
    overlay: bool = True,
    cam: bool = False,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> RayRun:
    """Analyse ``inputs`` into ``out`` on the Ray cluster of ``settings.address``; same files and summary as
    :func:`ptxseg.tasks.predict.predict_batch`. ``pipeline``: keyword arguments of
    :class:`~ptxseg.clinical.pipeline.ClinicalPipeline` (lungs, tta, bounds, mc_dropout, threads).

    Raises:
        PtxsegError: Ray is missing or the cluster cannot be joined, or ``out`` is not shared by every node.
    """
    out = prepare_output_dir(out)
    t0 = time.monotonic()
    ray = connect(settings.address)
    startup = time.monotonic() - t0
    check_shared(ray, out)
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = settings.actors or max(1, int(cluster_cpus // settings.cpus))
    pairs = zip(inputs, unique_ids(inputs), strict=True)
    items = [{"index": i, "path": str(p), "id": image_id} for i, (p, image_id) in enumerate(pairs)]
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ptxseg draws its own
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * actors)))
    kwargs = {"model": str(model), "out": str(out), "pipeline": pipeline or {}, "seg": seg, "overlay": overlay, "cam": cam}
    ds = ds.map_batches(
        PredictActor,
        fn_constructor_kwargs=kwargs,
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=settings.cpus,
        num_gpus=settings.gpus,
        max_restarts=-1,  # an actor whose process died comes back (models loaded again) ...
        max_task_retries=-1,  # ... and its batch is retried: the writes are idempotent
    )
    stream = (json.loads(r["row"]) for r in ds.iter_rows())
    rows = list(progress(stream, len(items)) if progress else stream)
    rows.sort(key=lambda r: r.pop("_index"))
    nodes = sorted({r.pop("_node") for r in rows})
    addresses = {n["NodeID"]: n["NodeManagerAddress"] for n in alive_nodes(ray)}
    return RayRun(table=write_summary(out, rows), nodes=[addresses.get(n, n) for n in nodes], startup_s=startup)
