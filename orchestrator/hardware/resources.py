"""The `ray start` flags that make a node schedulable by GPU group.

Ray's own accelerator detection names an RTX 3090 "G" and Ray Serve LLM accepts no consumer
card as an accelerator type (docs/sources.md: Ray's accelerator names), so each GPU group is
advertised as a custom resource ``gpu_group:<type>`` (``defaults.gpu_group_resource``) with
one unit per group; replicas ask for it through their placement groups. ``<type>`` is the
matching node type's name from a cluster spec when one is given, else the group's
canonical hardware name (``rtx-3090-x2-nvlink``).
"""

from __future__ import annotations

import json
import shlex
from collections import Counter

from pydantic import BaseModel, ConfigDict

from orchestrator.config import ClusterSpec
from orchestrator.defaults import GPU_GROUP_PREFIX, gpu_group_resource
from orchestrator.errors import UserError
from orchestrator.hardware.discovery import GPUGroup, Inventory

LABEL_PREFIX = "orchestrator.io"


class NodeResources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_gpus: int
    resources: dict[str, float]
    labels: dict[str, str]
    notes: list[str]

    def ray_start_args(self) -> list[str]:
        args = [f"--num-gpus={self.num_gpus}",
                f"--resources={json.dumps(self.resources, sort_keys=True)}"]
        if self.labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())))
        return args

    def command(self, head_address: str = "HEAD_IP:6379") -> str:
        return " ".join(["ray", "start", f"--address={head_address}",
                         *(shlex.quote(a) for a in self.ray_start_args())])


def _match(group: GPUGroup, spec: ClusterSpec) -> str | None:
    for nt in spec.node_types:
        if (nt.gpu == group.gpu_model and nt.gpus_per_node == group.size
                and nt.interconnect == group.interconnect):
            return nt.name
    return None


def node_resources(inv: Inventory, spec: ClusterSpec | None = None,
                   node_type: str | None = None) -> NodeResources:
    notes: list[str] = []
    if node_type is not None and spec is not None:
        spec.node_type(node_type)  # raises with the valid names
    names: list[str] = []
    if inv.cpu_only:
        if node_type is None:
            raise UserError(
                "this node has no GPU group to advertise; pass --node-type NAME (a CPU node "
                f"type of your cluster spec) to advertise it as {GPU_GROUP_PREFIX}NAME")
        names.append(node_type)
        notes.append(f"CPU-only node advertised as node type {node_type!r}")
    else:
        kinds = {g.type for g in inv.groups}
        if node_type is not None and len(kinds) > 1:
            raise UserError(f"--node-type names one type, but this node has {len(kinds)} "
                            f"kinds of GPU group ({', '.join(sorted(kinds))}); use --cluster")
        for g in inv.groups:
            name = node_type or (spec and _match(g, spec)) or g.type
            if spec is not None and node_type is None and name == g.type \
                    and _match(g, spec) is None:
                notes.append(f"GPUs {g.indices} ({g.type}) match no node type of cluster "
                             f"{spec.name!r}; advertised under their hardware name")
            names.append(name)
    counts = Counter(names)
    labels = {f"{LABEL_PREFIX}/node-type": names[0] if len(counts) == 1 else "mixed"}
    models = {g.gpu_model for g in inv.groups}
    if len(models) == 1:
        labels[f"{LABEL_PREFIX}/gpu-model"] = models.pop()
    return NodeResources(
        num_gpus=len(inv.gpus),
        resources={gpu_group_resource(n): float(c) for n, c in sorted(counts.items())},
        labels=labels, notes=notes)
