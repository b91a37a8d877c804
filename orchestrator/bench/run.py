"""`bench` as one function: the seed method or a trace replay against a live endpoint."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.bench import client as bc
from orchestrator.bench import report
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


def bench(o: BenchOptions):
    """A SeedResult (the seed guide's method) or, with a trace, a ReplayResult."""
    if (o.slo_ttft_s is None) != (o.slo_tpot_s is None):
        raise UserError("give both --slo-ttft and --slo-tpot, or neither")
    return asyncio.run(_bench(o))


async def _bench(o: BenchOptions):
    cl = bc.Client(o.url, o.model, o.api_key, o.chat, o.timeout_s)
    try:
        try:
            name = await cl.resolve_model()
        except Exception as e:
            raise UserError(f"cannot reach {o.url}: {type(e).__name__}: {e}") from None
        if o.trace_path:
            from orchestrator.sim.trace import load_trace, mean_rate, scale_rate

            reqs = scale_rate(load_trace(o.trace_path, o.limit), o.rate_scale)
            words, got = await bc.calibrate_words(cl, 256)
            ratio = words / got if got else 1.0
            samples = await bc.replay(cl, reqs, ratio, o.max_prompt_tokens,
                                      o.max_output_tokens)
            return report.replay_result(o.url, name, samples, mean_rate(reqs), o.slo_ttft_s,
                                        o.slo_tpot_s)
        rounds, measured = await bc.seed_method(cl, o.prompt_tokens, o.max_tokens, o.runs,
                                                o.concurrency)
        return report.seed_result(o.url, name, rounds, measured, o.concurrency)
    finally:
        await cl.close()
