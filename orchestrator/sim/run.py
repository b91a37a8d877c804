"""Run policies over a planned cluster: one rate, or a goodput sweep per policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from orchestrator.planner.plan import Plan
from orchestrator.router import policies as routing
from orchestrator.sim.engine import Simulation, replicas_from_plan
from orchestrator.sim.metrics import GoodputResult, Summary, find_goodput, summarize
from orchestrator.sim.trace import TraceRequest, scale_rate


@dataclass
class Scenario:
    plan: Plan
    trace: list[TraceRequest]
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.1
    seed: int = 0
    pools: list[str] | None = None  # only these node types (e.g. one pool alone)
    policy_args: dict = field(default_factory=dict)  # e.g. {"weights": {...}} for static_split
    max_waiting: int = 256

    def run(self, policy: str, scale: float = 1.0,
            on_progress: Callable[[int], None] | None = None) -> Summary:
        replicas = replicas_from_plan(self.plan, self.pools, self.max_waiting)
        sim = Simulation(replicas, routing.make(policy, seed=self.seed, **self.policy_args),
                         slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s,
                         on_progress=on_progress)
        done = sim.run(scale_rate(self.trace, scale))
        return summarize(done, len(replicas), self.slo_ttft_s, self.slo_tpot_s)

    def goodput(self, policy: str, *, target: float = 0.9, lo: float = 0.05,
                hi: float = 4.0, steps: int = 7) -> GoodputResult:
        return find_goodput(lambda s: self.run(policy, s), target=target, lo=lo, hi=hi,
                            steps=steps)
