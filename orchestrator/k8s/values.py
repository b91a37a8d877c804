"""Helm values for helm/orchestrator from a Plan: one worker group per node type that
serves, with its GPU count, gpu_group resource, node selector and replica bounds. The chart
only renders these; precision and TP stay decided by the planner."""

from __future__ import annotations

from orchestrator.config import ClusterSpec
from orchestrator.planner.plan import Plan

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def compact_plan(plan: Plan) -> Plan:
    """The plan without its explanations: what the cluster needs to deploy it."""
    return plan.model_copy(update={"node_types": [
        n.model_copy(update={"alternatives": [], "rejected": [], "not_offered": []})
        for n in plan.pools()]})


def _autoscaling(plan: Plan, spec: ClusterSpec) -> dict:
    """Serve-side autoscaling (docs/autoscaling.md): per-deployment bounds and the
    application-level policy, rendered into serveConfigV2 by the chart."""
    from orchestrator.autoscale.bounds import autoscaled, scaling_config

    if not autoscaled(spec):
        return {"scaling": {}, "autoscalingPolicy": {}}
    names = {n.node_type: f"pool-{n.node_type}" for n in plan.pools()}
    scaling, kwargs = scaling_config(plan, spec, names, "orchestrator")
    return {"scaling": scaling,
            "autoscalingPolicy": {"policy_function": "orchestrator.serve.autoscaler:"
                                                     "ClusterAutoscaler",
                                  "policy_kwargs": kwargs}}


def helm_values(plan: Plan, spec: ClusterSpec, *, model_name: str | None = None,
                image: str = "orchestrator", tag: str = "0.1.0") -> dict:
    groups = []
    for n in plan.pools():
        nt = spec.node_type(n.node_type)
        c = n.choice
        gpus = 0 if nt.is_cpu else nt.gpus_per_node
        cpu = str(nt.cpu.cores) if nt.is_cpu else str(max(4, 2 * gpus))
        memory = (f"{max(4, int(nt.cpu.memory_gb) + 2)}Gi" if nt.is_cpu
                  else f"{max(16, 8 * gpus)}Gi")
        # An autoscaled pool lets KubeRay add and remove its nodes between what the pool's
        # min needs and the inventory; others keep every node.
        lo = nt.count
        if nt.autoscaling is not None:
            from orchestrator.autoscale.bounds import pool_spec

            ps, _ = pool_spec(n, spec, n.node_type)
            lo = -(-ps.min_replicas // max(c.replicas_per_node, 1))
        groups.append({
            "name": n.node_type,
            "gpus": gpus,
            "replicas": nt.count,
            "minReplicas": lo,
            "maxReplicas": nt.count,
            "nodeSelector": dict(nt.labels),
            "tolerations": [GPU_TOLERATION] if gpus else [],
            "resources": {"requests": {"cpu": cpu, "memory": memory},
                          "limits": {"cpu": cpu, "memory": memory}},
            "precision": c.precision,
            "backend": c.backend,
            "replicasPerNode": c.replicas_per_node,
        })
    return {
        "image": {"repository": image, "tag": tag, "pullPolicy": "IfNotPresent"},
        "modelName": model_name or plan.model,
        "plan": compact_plan(plan).model_dump_json(),
        "routing": {"policy": "slo_aware", "sloTtftSeconds": 2.0, "sloTpotSeconds": 0.1},
        "serving": spec.serving.model_dump(mode="json", exclude_none=True),
        **_autoscaling(plan, spec),
        "apiKeys": {"secretName": "", "secretKey": "keys"},
        "artifacts": {"path": "/artifacts", "persistentVolumeClaim": "orchestrator-artifacts"},
        "workerGroups": groups,
    }
