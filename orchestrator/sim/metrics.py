"""Summaries of a simulated run and the goodput search (DistServe's definition: the highest
request rate at which a target share of requests meets both the TTFT and the TPOT SLO)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict

from orchestrator.sim.replica import SimRequest
from orchestrator.sim.trace import mean_rate


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int
    completed: int
    rejected: int
    rate_req_s: float  # offered
    duration_s: float
    throughput_tok_s: float  # output tokens per second of the run
    ttft_s: dict[str, float]  # p50 / p90 / p99
    tpot_s: dict[str, float]
    slo_attainment: float
    precision_token_share: dict[str, float]
    pool_request_share: dict[str, float]
    replica_seconds: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[idx]


def _pcts(values: list[float]) -> dict[str, float]:
    return {f"p{q}": percentile(values, q) for q in (50, 90, 99)}


def meets(r: SimRequest, slo_ttft_s: float, slo_tpot_s: float) -> bool:
    return r.finish_s is not None and r.ttft_s <= slo_ttft_s and r.tpot_s <= slo_tpot_s


def summarize(reqs: list[SimRequest], replicas: int, slo_ttft_s: float,
              slo_tpot_s: float) -> Summary:
    done = [r for r in reqs if r.finish_s is not None]
    start = min(r.arrival_s for r in reqs)
    end = max([r.finish_s for r in done] + [r.arrival_s for r in reqs])
    span = max(end - start, 1e-9)
    tokens = Counter()
    for r in done:
        tokens[r.precision] += r.output_tokens
    total_tokens = sum(tokens.values()) or 1
    pools = Counter(r.pool for r in done)
    return Summary(
        requests=len(reqs), completed=len(done), rejected=sum(1 for r in reqs if r.rejected),
        rate_req_s=mean_rate(reqs), duration_s=span,
        throughput_tok_s=sum(r.output_tokens for r in done) / span,
        ttft_s=_pcts([r.ttft_s for r in done]), tpot_s=_pcts([r.tpot_s for r in done]),
        slo_attainment=sum(meets(r, slo_ttft_s, slo_tpot_s) for r in reqs) / len(reqs),
        precision_token_share={k: v / total_tokens for k, v in sorted(tokens.items())},
        pool_request_share={k: v / max(len(done), 1) for k, v in sorted(pools.items())},
        replica_seconds=replicas * span,
    )


@dataclass(frozen=True)
class GoodputResult:
    goodput_req_s: float  # 0 when even the lowest rate tried misses the target
    scale: float
    points: list[tuple[float, float, float]]  # (rate req/s, attainment, scale), by rate


def find_goodput(run_at: Callable[[float], Summary], *, target: float = 0.9,
                 lo: float = 0.05, hi: float = 4.0, steps: int = 7) -> GoodputResult:
    """Bisect the rate scale for the highest one whose attainment still reaches ``target``.

    Attainment falls as load rises; the search brackets the crossing between ``lo`` and
    ``hi`` (times the trace's own rate), then halves the bracket ``steps`` times.
    """
    seen: dict[float, Summary] = {}

    def at(scale: float) -> Summary:
        if scale not in seen:
            seen[scale] = run_at(scale)
        return seen[scale]

    if at(lo).slo_attainment < target:
        good = None
    elif at(hi).slo_attainment >= target:
        good = hi
    else:
        a, b = lo, hi
        for _ in range(steps):
            mid = (a * b) ** 0.5
            if at(mid).slo_attainment >= target:
                a = mid
            else:
                b = mid
        good = a
    points = sorted((s.rate_req_s, s.slo_attainment, k) for k, s in seen.items())
    if good is None:
        return GoodputResult(0.0, 0.0, points)
    return GoodputResult(seen[good].rate_req_s, good, points)
