"""Helm values for helm/orchestrator from a Plan: one worker group per node type that
serves, with its GPU count, gpu_group resource, node selector and replica bounds. The chart
only renders these; precision and TP stay decided by the planner."""

from __future__ import annotations

from orchestrator.config import ClusterSpec
from orchestrator.planner.plan import Plan
from orchestrator.router.policies import DEFAULT_POLICY
from orchestrator.serve.contract import AUTOSCALER, app_args

ARTIFACTS_PATH = "/artifacts"  # where the chart mounts the artifact store in every pod
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def helm_values(plan: Plan, spec: ClusterSpec, *, model_name: str | None = None,
                image: str = "orchestrator", tag: str = "0.1.0") -> dict:
    """The chart's values. The application's part is serve/contract.AppArgs, spelt the way
    the chart's values name it; the chart renders it back into serveConfigV2's args."""
    # in the cluster the app reads API keys from the Secret the chart exposes
    args, policy_kwargs = app_args(plan, spec, model_name=model_name or plan.model,
                                   store=ARTIFACTS_PATH, policy=DEFAULT_POLICY,
                                   keys_in_cluster=True)
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
            "rayResource": nt.resource,
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
        "rayAuth": {"mode": "token"},
        "modelName": args.public_name,
        "plan": args.plan.model_dump_json(),
        "routing": {"policy": args.policy, "sloTtftSeconds": args.slo_ttft_s,
                    "sloTpotSeconds": args.slo_tpot_s},
        "serving": args.serving.model_dump(mode="json", exclude_none=True),
        "scaling": args.scaling or {},
        "autoscalingPolicy": {} if policy_kwargs is None else {
            "policy_function": AUTOSCALER, "policy_kwargs": policy_kwargs},
        "apiKeys": {"secretName": "", "secretKey": "keys"},
        "artifacts": {"path": args.store, "persistentVolumeClaim": "orchestrator-artifacts"},
        "workerGroups": groups,
    }
