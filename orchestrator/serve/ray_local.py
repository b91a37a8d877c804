"""The one place that starts or joins Ray, for `build` and `up` alike.

Without an address, this machine stands in for the cluster spec: its CPU node types run here
as `count` units of their gpu_group resource each, its GPU node types as the GPU groups this
machine really has. `up` starts that as a detached cluster (`ray start --head`) that outlives
the command; `build` starts it for the command's lifetime.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import ClusterSpec
from orchestrator.errors import OrchestratorError
from orchestrator.hardware.discovery import Inventory, discover
from orchestrator.hardware.resources import node_resources


@dataclass(frozen=True)
class LocalNode:
    num_cpus: int
    num_gpus: int
    resources: dict[str, float]


def local_node(spec: ClusterSpec, inv: Inventory | None = None) -> LocalNode:
    inv = inv or discover()
    res = {nt.resource: float(nt.count) for nt in spec.node_types if nt.is_cpu}
    if not inv.cpu_only:
        for name, units in node_resources(inv, spec).resources.items():
            if any(nt.resource == name for nt in spec.node_types):
                res[name] = units
    return LocalNode(os.cpu_count() or 1, len(inv.gpus), res)


def _quiet() -> None:
    # No usage statistics: serving clusters are often offline, and nothing here needs them.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def ensure_token() -> None:
    """Ray's token authentication stays on for every cluster `up` starts: a token in
    ~/.ray/auth_token (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH) and RAY_AUTH_MODE=token
    for `ray start` and everything this process starts or joins. `ray start --head` alone
    turns it on only where a token already exists."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    proc = subprocess.run([_ray_bin(), "get-auth-token", "--generate"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise OrchestratorError("could not make Ray's authentication token: "
                                + (proc.stderr or proc.stdout).strip()[-300:])


def start_detached(node: LocalNode) -> None:
    """`ray start --head` as a local cluster that outlives this command: token
    authentication on, and Ray's addresses on loopback (Ray 2.60's GCS and raylet still
    listen on every interface; the token is what refuses other hosts, docs/multi-node.md)."""
    _quiet()
    ensure_token()
    cmd = [_ray_bin(), "start", "--head", "--node-ip-address=127.0.0.1",
           f"--num-cpus={node.num_cpus}", f"--num-gpus={node.num_gpus}",
           f"--resources={json.dumps(node.resources)}", "--include-dashboard=false",
           "--disable-usage-stats"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise OrchestratorError("ray start failed: " + " | ".join(tail) +
                                " (a Ray cluster may already run here: `orchestrator down` "
                                "or `ray stop`)")


def stop_detached() -> None:
    subprocess.run([_ray_bin(), "stop", "--force"], capture_output=True, text=True)


def connect(address: str | None) -> None:
    """Join a running cluster: `address`, or the local one (`auto`)."""
    import ray

    _quiet()
    if not ray.is_initialized():
        ray.init(address=address or "auto", log_to_driver=False,
                 namespace="orchestrator", logging_level="warning")


def join_or_start(spec: ClusterSpec, address: str | None) -> None:
    """For commands that need Ray only while they run (`build`): the cluster at `address`,
    else a local one for this command's lifetime (not the one `up` started, whose replicas
    hold every GPU group a build would wait for)."""
    import ray

    _quiet()
    if ray.is_initialized():
        return
    if address:
        return connect(address)
    node = local_node(spec)
    ray.init(num_cpus=node.num_cpus, num_gpus=node.num_gpus, resources=node.resources,
             include_dashboard=False, log_to_driver=False, namespace="orchestrator")
