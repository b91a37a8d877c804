"""Run policies over a planned cluster: one rate, or a goodput sweep per policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from orchestrator.autoscale.policy import Knobs, PoolSpec
from orchestrator.defaults import MAX_WAITING, SLO_TPOT_S, SLO_TTFT_S
from orchestrator.planner.plan import Plan
from orchestrator.router import policies as routing
from orchestrator.sim.autoscale import AutoscaledSimulation, ScalingLog
from orchestrator.sim.decisions import DecisionLog
from orchestrator.sim.error import SpeedError
from orchestrator.sim.events import CLIENT_MAX_TOKENS, Simulation, replicas_from_plan
from orchestrator.sim.metrics import GoodputResult, Summary, find_goodput, summarize
from orchestrator.sim.trace import TraceRequest, scale_rate


@dataclass
class Autoscale:
    """The autoscaling policy's setup for a simulated run (names are node types)."""

    specs: list[PoolSpec]
    initial: dict[str, int]
    knobs: Knobs = field(default_factory=Knobs)
    tick_s: float = 5.0
    cold_start_s: float = 60.0  # loading a 70B checkpoint onto a GPU group

    @classmethod
    def from_spec(cls, plan: Plan, spec, **kw) -> "Autoscale":
        from orchestrator.autoscale.bounds import pool_spec

        pairs = [pool_spec(n, spec, n.node_type) for n in plan.pools()]
        return cls([p for p, _ in pairs], {p.name: i for p, i in pairs},
                   Knobs(**spec.autoscaling.model_dump()), **kw)


@dataclass
class Scenario:
    plan: Plan
    trace: list[TraceRequest]
    slo_ttft_s: float = SLO_TTFT_S
    slo_tpot_s: float = SLO_TPOT_S
    seed: int = 0
    pools: list[str] | None = None  # only these node types (e.g. one pool alone)
    policy_args: dict = field(default_factory=dict)  # e.g. {"weights": {...}} for static_split
    max_waiting: int = MAX_WAITING  # the live endpoint's bound, so rejections match
    autoscale: Autoscale | None = None  # None: the plan's replicas, fixed
    speed_error: SpeedError = field(default_factory=SpeedError)  # true speed vs the plan's
    max_tokens: int = CLIENT_MAX_TOKENS  # what each simulated client sends
    router_prefix: bool = True  # False: the router ignores prefix blocks (the caches do not)
    last_scaling: ScalingLog | None = field(default=None, repr=False)  # of the last run

    def run(self, policy: str, scale: float = 1.0,
            on_progress: Callable[[int], None] | None = None,
            decisions: DecisionLog | None = None) -> Summary:
        if self.autoscale is not None:
            return self._run_autoscaled(policy, scale, decisions)
        replicas = replicas_from_plan(self.plan, self.pools, self.max_waiting, self.speed_error)
        sim = Simulation(replicas, routing.make(policy, seed=self.seed, **self.policy_args),
                         slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s,
                         on_progress=on_progress, max_tokens=self.max_tokens,
                         decisions=decisions, router_prefix=self.router_prefix)
        done = sim.run(scale_rate(self.trace, scale))
        return summarize(done, len(replicas), self.slo_ttft_s, self.slo_tpot_s)

    def _run_autoscaled(self, policy: str, scale: float,
                        decisions: DecisionLog | None = None) -> Summary:
        a = self.autoscale
        sim = AutoscaledSimulation(
            self.plan, a.specs, a.initial, routing.make(policy, seed=self.seed,
                                                        **self.policy_args),
            slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s, knobs=a.knobs,
            tick_s=a.tick_s, cold_start_s=a.cold_start_s, max_waiting=self.max_waiting,
            error=self.speed_error, max_tokens=self.max_tokens, decisions=decisions)
        done = sim.run(scale_rate(self.trace, scale))
        self.last_scaling = sim.log  # per-pool replica-seconds and the scaling events
        s = summarize(done, 0, self.slo_ttft_s, self.slo_tpot_s)
        return s.model_copy(update={"replica_seconds": sim.log.replica_seconds})

    def goodput(self, policy: str, *, target: float = 0.9, lo: float = 0.05,
                hi: float = 4.0, steps: int = 7) -> GoodputResult:
        return find_goodput(lambda s: self.run(policy, s), target=target, lo=lo, hi=hi,
                            steps=steps)
