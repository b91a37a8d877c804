"""What `orchestrator simulate` computes: one summary per policy, or a goodput sweep."""

from __future__ import annotations

from typing import Callable

from pydantic import BaseModel, ConfigDict

from orchestrator.sim.decisions import DecisionLog
from orchestrator.sim.metrics import Summary
from orchestrator.sim.run import Scenario


class PolicyResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str
    summary: Summary | None = None  # single-rate run
    goodput_req_s: float | None = None  # sweep
    goodput_scale: float | None = None
    sweep: list[dict] | None = None  # [{rate_req_s, attainment, scale}]


def simulate_policies(scenario: Scenario, policies: list[str], *, sweep: bool,
                      rate_scale: float = 1.0, target: float = 0.9,
                      decisions_path: str | None = None,
                      tick: Callable[[str], None] = lambda _: None) -> list[PolicyResult]:
    out = []
    fh = open(decisions_path, "w") if decisions_path else None
    try:
        for name in policies:
            out.append(_one(scenario, name, sweep, rate_scale, target, fh))
            tick(name)
    finally:
        if fh:
            fh.close()
    return out


def _one(scenario, name, sweep, rate_scale, target, fh) -> PolicyResult:
    if sweep:
        g = scenario.goodput(name, target=target)
        return PolicyResult(
            policy=name, goodput_req_s=g.goodput_req_s, goodput_scale=g.scale,
            sweep=[{"rate_req_s": r, "attainment": a, "scale": s} for r, a, s in g.points])
    log = DecisionLog(fh, name, scenario.slo_ttft_s, scenario.slo_tpot_s) if fh else None
    return PolicyResult(policy=name, summary=scenario.run(name, rate_scale, decisions=log))


def plot(results: list[PolicyResult], path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from orchestrator.errors import UserError

        raise UserError("--plot needs matplotlib: pip install 'orchestrator[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 5))
    # more series than the palette's 10 colours: the marker tells the repeats apart
    markers = "os^Dv"
    for i, r in enumerate(results):
        if r.sweep:
            pts = sorted((p["rate_req_s"], p["attainment"]) for p in r.sweep)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts],
                    marker=markers[i // 10 % len(markers)], linestyle="-" if i < 10 else "--",
                    label=f"{r.policy} (goodput {r.goodput_req_s:.2f} req/s)")
        elif r.summary:
            ax.scatter([r.summary.rate_req_s], [100 * r.summary.slo_attainment], label=r.policy)
    ax.axhline(90, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("requests meeting TTFT and TPOT SLO (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
