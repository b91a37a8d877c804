"""A cluster spec file in, its plan out: what every command that serves, builds or
simulates starts with."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.planner.plan import Plan
from orchestrator.planner.select import plan_cluster, require_feasible


def plan_file(path: str | Path, *, model: str | None = None,
              feasible: bool = True) -> tuple[ClusterSpec, Plan]:
    """The spec and its plan; with `feasible`, NoFeasiblePlanError where nothing fits on
    any node type."""
    spec = load_cluster_spec(path)
    plan = plan_cluster(spec, model=model)
    return spec, require_feasible(plan) if feasible else plan
