"""Joining or starting a Ray cluster, and checking that an output folder is one every node can reach."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ptxseg.errors import PtxsegError

#: Ray's environment switch that keeps a cluster on 127.0.0.1 (set to "0" for every process of a local cluster)
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ray_module():
    """The ``ray`` package, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise PtxsegError("--ray", "needs Ray: pip install 'ptxseg[cluster]' (make test installs it)") from None
    return ray


def connect(address: str, cpus: int | None = None):
    """Connect this process to a Ray cluster: ``local`` starts one in-process on loopback (``cpus`` CPUs, default
    all), ``auto`` joins the one running on this machine, ``HOST:PORT`` joins that head node. Returns ``ray``."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": "warning"}
    try:
        if address == "local":
            # Ray otherwise advertises the machine's network address and listens on it; a cluster started here
            # for one batch stays on loopback (Ray's own switch for single-machine clusters)
            os.environ.setdefault(LOOPBACK_ONLY, "0")
            ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PtxsegError("--ray", f"cannot join the Ray cluster at {address!r}: {str(exc).splitlines()[0][:200]}") from None
    return ray


def alive_nodes(ray) -> list[dict]:
    """The cluster's live nodes (Ray's node records)."""
    return [n for n in ray.nodes() if n.get("Alive")]


def nodes_missing(ray, path: Path) -> list[str]:
    """The addresses of live nodes on which ``path`` does not exist (checked by a task pinned to each node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def exists(p: str) -> bool:
        return Path(p).exists()

    nodes = alive_nodes(ray)
    checks = [
        exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(path)) for n in nodes
    ]
    return [n["NodeManagerAddress"] for n, ok in zip(nodes, ray.get(checks), strict=True) if not ok]


def check_shared(ray, out: Path) -> None:
    """Refuse an output folder some node of a multi-node cluster cannot see (a local-only OUT would scatter the
    results over the nodes' own disks): a marker written here must exist on every node."""
    if len(alive_nodes(ray)) < 2:
        return
    marker = out / f".ptxseg-shared-{uuid.uuid4().hex[:12]}"
    marker.write_text("ptxseg: is this folder shared by every Ray node?\n")
    try:
        missing = nodes_missing(ray, marker)
    finally:
        marker.unlink(missing_ok=True)
    if missing:
        raise PtxsegError(
            out, f"is not on a filesystem every Ray node reaches ({', '.join(missing)} cannot see it): use a shared --out"
        )
