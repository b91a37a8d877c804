"""`bench` as one function: the seed method, or a trace replayed once per routing policy
side by side (bench/trace_bench.py), against a live endpoint."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.bench import client as bc
from orchestrator.bench import report
from orchestrator.defaults import BENCH_POLICIES, SLO_TPOT_S, SLO_TTFT_S
from orchestrator.errors import UserError


@dataclass(frozen=True)
class BenchOptions:
    url: str
    model: str | None = None
    api_key: str | None = None
    chat: bool = False
    prompt_tokens: int = 512
    max_tokens: int = 256
    runs: int = 5
    concurrency: int = 1
    trace_path: str | None = None
    rate_scale: float = 1.0
    limit: int = 50
    max_prompt_tokens: int = 1024
    max_output_tokens: int = 256
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    timeout_s: float = 600.0
    token_scale: float = 1.0
    policies: tuple[str, ...] = BENCH_POLICIES


def check_policies(names: tuple[str, ...]) -> tuple[str, ...]:
    from orchestrator.bench.trace_bench import DEPLOYMENT
    from orchestrator.router.policies import POLICIES

    if not names:
        raise UserError("--policies names no policy")
    valid = [DEPLOYMENT, *POLICIES]
    for n in names:
        if n not in valid:
            raise UserError(f"unknown routing policy {n!r}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise UserError(f"--policies names one twice: {','.join(names)}")
    return names


def bench(o: BenchOptions):
    """A BenchResult (the seed guide's method) or, with a trace, a TraceResult."""
    if o.trace_path:
        check_policies(o.policies)
    elif (o.slo_ttft_s is None) != (o.slo_tpot_s is None):
        raise UserError("give both --slo-ttft and --slo-tpot, or neither")
    return asyncio.run(_bench(o))


async def _trace(cl: bc.Client, o: BenchOptions, name: str) -> report.TraceResult:
    from orchestrator.bench.trace_bench import Shape, replay_policies
    from orchestrator.sim.trace import load_trace, mean_rate, scale_rate

    reqs = scale_rate(load_trace(o.trace_path, o.limit), o.rate_scale)
    words, got = await bc.calibrate_words(cl, 256)
    shape = Shape(o.token_scale, o.max_prompt_tokens, o.max_output_tokens,
                  words / got if got else 1.0)
    samples = await replay_policies(cl, reqs, list(o.policies), shape)
    ttft = o.slo_ttft_s if o.slo_ttft_s is not None else SLO_TTFT_S
    tpot = o.slo_tpot_s if o.slo_tpot_s is not None else SLO_TPOT_S
    return report.TraceResult(
        url=o.url, model=name, trace=str(o.trace_path), requests=len(reqs),
        offered_rate_req_s=mean_rate(reqs), token_scale=o.token_scale,
        words_per_token=shape.words_per_token, slo_ttft_s=ttft, slo_tpot_s=tpot,
        policies=[report.policy_result(p, samples[p], ttft, tpot) for p in o.policies])


async def _bench(o: BenchOptions):
    cl = bc.Client(o.url, o.model, o.api_key, o.chat, o.timeout_s)
    try:
        try:
            name = await cl.resolve_model()
        except Exception as e:
            raise UserError(f"cannot reach {o.url}: {type(e).__name__}: {e}") from None
        if o.trace_path:
            return await _trace(cl, o, name)
        rounds, measured = await bc.seed_method(cl, o.prompt_tokens, o.max_tokens, o.runs,
                                                o.concurrency)
        return report.seed_result(o.url, name, rounds, measured, o.concurrency)
    finally:
        await cl.close()
