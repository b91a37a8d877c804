"""`simulate`'s options checked and turned into a Scenario: the cluster spec file planned,
the workload loaded or generated, pins and autoscaling applied."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.defaults import SLO_TPOT_S, SLO_TTFT_S
from orchestrator.errors import UserError
from orchestrator.planner.plan import Plan
from orchestrator.sim.run import Scenario


@dataclass(frozen=True)
class SimOptions:
    trace_path: str | None = None
    synthetic: str | None = None  # poisson | bursty
    rate: float = 2.0  # requests/s of the synthetic workload
    limit: int | None = None  # first N requests (synthetic default 2000)
    policies: tuple[str, ...] = ()  # routing policies; () = all but static_split
    slo_ttft_s: float = SLO_TTFT_S
    slo_tpot_s: float = SLO_TPOT_S
    pools: tuple[str, ...] = ()  # only these node types
    pin_share: float = 0.0
    pin_precision: str | None = None
    model: str | None = None
    seed: int = 0
    autoscale: bool = False
    cold_start_s: float = 60.0
    max_tokens: int | None = None  # None: CLIENT_MAX_TOKENS
    speed_error: str | None = None  # SpeedError.parse's text
    step_noise: float | None = None


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    scenario: Scenario
    policies: list[str]


def prepare(cluster_path: str | Path, o: SimOptions) -> Prepared:
    from orchestrator.planner.from_file import plan_file
    from orchestrator.router.policies import POLICIES, make
    from orchestrator.sim import trace as traces

    if bool(o.trace_path) == bool(o.synthetic):
        raise UserError("give exactly one of --trace FILE or --synthetic poisson|bursty")
    if o.pin_share and not o.pin_precision:
        raise UserError("--pin-share needs --pin-precision (e.g. f16)")
    for name in o.policies:
        make(name)  # validates the name before any work
    if "static_split" in o.policies:
        raise UserError("static_split needs pool weights; run it from "
                        "benchmarks/routing_goodput.py")
    names = list(o.policies) or [p for p in POLICIES if p != "static_split"]
    spec, plan = plan_file(cluster_path, model=o.model)
    serving = [n.node_type for n in plan.pools()]
    unknown = set(o.pools) - set(serving)
    if unknown:
        raise UserError(f"--only {', '.join(sorted(unknown))}: not a node type that serves "
                        f"in this plan; serving: {', '.join(serving)}")
    reqs = (traces.load_trace(o.trace_path, o.limit) if o.trace_path
            else traces.synthetic(o.synthetic, o.rate, o.limit or 2000, o.seed))
    if o.pin_share:
        from orchestrator.models.precision import get_precision

        reqs = traces.pin_share(reqs, o.pin_share, get_precision(o.pin_precision).id, o.seed)
    scaling = None
    if o.autoscale:
        from orchestrator.autoscale.bounds import autoscaled
        from orchestrator.sim.run import Autoscale

        if not autoscaled(spec):
            raise UserError(f"--autoscale: no node type in {cluster_path} has an "
                            "`autoscaling:` section (docs/autoscaling.md)")
        if o.pools:
            raise UserError("--autoscale simulates every pool; drop --only")
        scaling = Autoscale.from_spec(plan, spec, cold_start_s=o.cold_start_s)
    from orchestrator.sim.error import SpeedError
    from orchestrator.sim.events import CLIENT_MAX_TOKENS

    error = SpeedError.parse(o.speed_error, serving, seed=o.seed, step_noise=o.step_noise)
    scenario = Scenario(plan, reqs, o.slo_ttft_s, o.slo_tpot_s, seed=o.seed,
                        pools=list(o.pools) or None, autoscale=scaling,
                        max_waiting=spec.serving.max_waiting, speed_error=error,
                        max_tokens=o.max_tokens or CLIENT_MAX_TOKENS)
    return Prepared(plan, scenario, names)
