"""Per-pool autoscaling bounds from the plan and the spec (pure): what the policy may do
with each pool, checked against the inventory before anything is deployed."""

from __future__ import annotations

from dataclasses import asdict

from orchestrator.autoscale.policy import Knobs, PoolSpec
from orchestrator.config import ClusterSpec
from orchestrator.errors import SpecError
from orchestrator.planner.plan import NodePlan, Plan


def pool_spec(n: NodePlan, spec: ClusterSpec, name: str) -> tuple[PoolSpec, int]:
    """The policy's view of pool ``name`` (node type ``n``) and its initial replicas."""
    nt = spec.node_type(n.node_type)
    s = nt.autoscaling
    c = n.choice
    inventory = n.replicas  # GPU groups of this type x replicas per group
    if s is None:  # not autoscaled: pinned at what the inventory holds
        lo = hi = initial = inventory
        to_zero = False
    else:
        hi = s.max_replicas if s.max_replicas is not None else inventory
        if hi > inventory:
            raise SpecError(f"node_types ({n.node_type}).autoscaling.max_replicas {hi} exceeds "
                            f"the {inventory} replica(s) its {nt.count} node(s) hold; raise "
                            "count or lower max_replicas")
        lo = s.min_replicas if s.min_replicas is not None else min(1, hi)
        initial = s.initial_replicas if s.initial_replicas is not None else lo
        if not lo <= initial <= hi:
            raise SpecError(f"node_types ({n.node_type}).autoscaling.initial_replicas "
                            f"{initial} is outside [{lo}, {hi}]")
        to_zero = s.scale_to_zero
    per_replica = max(1, min(c.perf.batch, c.memory.concurrent_sequences or 1))
    return PoolSpec(name=name, precision=c.precision, quality_rank=c.quality_rank,
                    sequences_per_replica=per_replica,
                    tokens_per_s_per_replica=c.perf.batched_tokens_per_s,
                    min_replicas=lo, max_replicas=hi, scale_to_zero=to_zero,
                    prefill_tokens_per_s_per_replica=c.speed_model.speeds()
                    .prefill_tokens_per_s()), initial


def autoscaled(spec: ClusterSpec | None) -> bool:
    return spec is not None and any(nt.autoscaling is not None for nt in spec.node_types)


def policy_kwargs(plan: Plan, spec: ClusterSpec, names: dict[str, str], app: str) -> dict:
    """JSON-able arguments for autoscaler.ClusterAutoscaler: every pool's PoolSpec (by
    deployment name) and the knobs."""
    pools = [asdict(pool_spec(n, spec, names[n.node_type])[0]) for n in plan.pools()]
    knobs = asdict(Knobs(**spec.autoscaling.model_dump()))
    return {"pools": pools, "knobs": knobs, "app": app}


def scaling_config(plan: Plan, spec: ClusterSpec, names: dict[str, str],
                   app: str) -> tuple[dict[str, dict], dict]:
    """Serve's per-deployment bounds (deployment name -> min/max/initial replicas) and the
    application-level policy's arguments."""
    scaling = {}
    for n in plan.pools():
        ps, initial = pool_spec(n, spec, names[n.node_type])
        scaling[ps.name] = {"min_replicas": ps.min_replicas, "max_replicas": ps.max_replicas,
                            "initial_replicas": initial}
    return scaling, policy_kwargs(plan, spec, names, app)
