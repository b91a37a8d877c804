"""A local Ray for a single machine that stands in for a cluster spec's node types."""

from __future__ import annotations

import os

from orchestrator.config import ClusterSpec
from orchestrator.hardware.discovery import Inventory
from orchestrator.hardware.resources import node_resources


def local_resources(spec: ClusterSpec, inv: Inventory) -> dict[str, float]:
    """CPU node types run here as `count` units each; GPU node types as the GPU groups this
    machine really has (none on a CPU-only machine)."""
    res = {nt.resource: float(nt.count) for nt in spec.node_types if nt.is_cpu}
    if not inv.cpu_only:
        for name, units in node_resources(inv, spec).resources.items():
            if any(nt.resource == name for nt in spec.node_types):
                res[name] = units
    return res


def init_ray(spec: ClusterSpec, address: str | None, inv: Inventory | None = None) -> None:
    # No usage statistics: serving clusters are often offline, and nothing here needs them.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    from orchestrator.hardware.discovery import discover

    inv = inv or discover()
    ray.init(num_cpus=os.cpu_count() or 1, num_gpus=len(inv.gpus),
             resources=local_resources(spec, inv), include_dashboard=False,
             log_to_driver=False)
