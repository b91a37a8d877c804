"""Summaries of benchmark samples: medians for the seed method, percentiles per policy for
a trace replay."""

from __future__ import annotations

from collections import Counter
from statistics import median

from pydantic import BaseModel, ConfigDict

from orchestrator.bench.client import Sample
from orchestrator.sim.metrics import percentile


class BenchResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str  # seed
    url: str
    model: str
    requests: int
    errors: int
    error_kinds: dict[str, int]
    prompt_tokens: int | None  # measured by the server for the calibrated prompt
    completion_tokens_median: float | None
    ttft_s: dict[str, float]  # p50 p90 p99 (seed: p50 is the median of runs)
    tpot_s: dict[str, float]
    decode_tok_s_median: float | None  # per stream
    e2e_tok_s_median: float | None  # per stream
    aggregate_tok_s_median: float | None  # all streams of a run / its wall time
    concurrency: int | None = None
    runs: int | None = None


def _pcts(values) -> dict[str, float]:
    values = [v for v in values if v is not None]
    return {f"p{q}": percentile(values, q) for q in (50, 90, 99)} if values else {}


def _med(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _per_request(samples: list[Sample]) -> dict:
    """The fields the seed method and each policy of a replay compute alike."""
    good = [s for s in samples if s.ok]
    bad = [s for s in samples if not s.ok]
    return dict(
        requests=len(samples), errors=len(bad),
        error_kinds=dict(Counter(s.error or "error" for s in bad)),
        completion_tokens_median=_med([s.completion_tokens for s in good]),
        ttft_s=_pcts([s.ttft_s for s in good]), tpot_s=_pcts([s.tpot_s for s in good]),
        decode_tok_s_median=_med([s.decode_tok_s for s in good]),
        e2e_tok_s_median=_med([s.e2e_tok_s for s in good]))


def seed_result(url: str, model: str, rounds: list[list[Sample]], prompt_tokens: int | None,
                concurrency: int) -> BenchResult:
    flat = [s for r in rounds for s in r]
    aggregates = []
    for r in rounds:
        ok = [s for s in r if s.ok]
        if ok:
            wall = max(s.end for s in ok) - min(s.start for s in ok)
            aggregates.append(sum(s.completion_tokens for s in ok) / wall)
    return BenchResult(
        mode="seed", url=url, model=model, prompt_tokens=prompt_tokens,
        aggregate_tok_s_median=_med(aggregates), concurrency=concurrency, runs=len(rounds),
        **_per_request(flat))


class PolicyResult(BaseModel):
    """One routing policy's side of a `bench --trace` run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str
    requests: int
    errors: int
    error_kinds: dict[str, int]
    slo_attainment: float  # share of all its requests meeting both objectives
    ttft_s: dict[str, float]  # p50 p90 p99
    tpot_p50_s: float | None
    pools: dict[str, int]  # answered requests per pool (x-orchestrator-pool)
    prompt_tokens_median: float | None  # the server's usage
    completion_tokens_median: float | None


class TraceResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = "trace"
    url: str
    model: str
    trace: str
    requests: int  # trace requests each policy sent
    offered_rate_req_s: float  # per policy; the endpoint got this times the policies
    token_scale: float
    words_per_token: float
    slo_ttft_s: float
    slo_tpot_s: float
    policies: list[PolicyResult]


def policy_result(policy: str, samples: list[Sample], slo_ttft: float,
                  slo_tpot: float) -> PolicyResult:
    good = [s for s in samples if s.ok]
    met = sum(1 for s in good if s.ttft_s <= slo_ttft and (s.tpot_s or 0) <= slo_tpot)
    per = _per_request(samples)
    return PolicyResult(
        policy=policy, requests=per["requests"], errors=per["errors"],
        error_kinds=per["error_kinds"], slo_attainment=met / len(samples) if samples else 0.0,
        ttft_s=per["ttft_s"], tpot_p50_s=per["tpot_s"].get("p50"),
        pools=dict(sorted(Counter(s.pool or "?" for s in good).items())),
        prompt_tokens_median=_med([s.prompt_tokens for s in good]),
        completion_tokens_median=per["completion_tokens_median"])
