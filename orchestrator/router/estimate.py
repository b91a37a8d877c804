"""Time-to-first-token and time-per-output-token estimates for one request on one replica.

From the planner's performance model (``Speeds``) and the replica's current load:
- one sequence at a time (max_batch 1, our llama.cpp engine): the request waits for the
  running sequence to finish and for every queued one to prefill and decode;
- continuous batching: the queued prompts ahead prefill first (compute-bound), then ours;
  when the batch or the KV cache is full, it also waits for running sequences to finish;
- prefill takes compute from decoding: at a recent prompt load that keeps prefill busy a
  share ``u`` of the time, decodes advance only in the rest (TPOT / (1 - u)). Chunking
  (2048-token iterations) does not change that share, since a chunk's compute outlasts a
  memory-bound decode step; it only stops one long prompt from stalling the batch at
  once, which a backend that does not chunk pays on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.router.context import ReplicaView, RouteRequest


MAX_PREFILL_SHARE = 0.95


@dataclass(frozen=True)
class Estimate:
    ttft_s: float
    tpot_s: float  # expected over the request's life, with the recent prefill load
    step_s: float  # the decode step now, before any prefill the router sends later

    def finish_s(self, max_tokens: int) -> float:
        return self.ttft_s + max(max_tokens - 1, 0) * self.tpot_s

    def finish_now_s(self, max_tokens: int) -> float:
        """Finish time from the current queue and batch alone. Ranking replicas by this
        rather than by ``finish_s`` keeps the router from shunning a replica for load it
        had (the router itself decides the load each replica gets next)."""
        return self.ttft_s + max(max_tokens - 1, 0) * self.step_s

    def pressure(self, req: RouteRequest) -> float:
        """The larger share of the TTFT or TPOT objective this estimate uses up."""
        return max(self.ttft_s / req.slo_ttft_s, self.tpot_s / req.slo_tpot_s)

    def meets(self, req: RouteRequest, margin: float = 1.0) -> bool:
        return self.pressure(req) <= margin


def _mean_context(view: ReplicaView, req: RouteRequest) -> float:
    n = view.running + 1
    return (view.running_context_tokens + req.prompt_tokens + req.output_guess / 2) / n


def estimate(req: RouteRequest, view: ReplicaView) -> Estimate:
    """From what the router knows: the predicted output length, not the true one, and the
    prompt tokens this replica would have to compute (less what its prefix cache holds)."""
    sp, corr = view.speeds, max(view.speed_correction, 1e-3)
    prefill_rate = sp.prefill_tokens_per_s() * corr
    ctx = _mean_context(view, req)
    prompt = req.prompt_tokens - view.cached_tokens(req)
    if view.max_batch <= 1:
        step = sp.decode_step_s(1, ctx) / corr
        ahead = (view.decode_tokens_left * step
                 + view.waiting_prefill_tokens / prefill_rate
                 + view.waiting_output_tokens * step)
        return Estimate(ahead + prompt / prefill_rate, step, step)
    batch = min(view.running + view.waiting + 1, view.max_batch)
    step = sp.decode_step_s(batch, ctx) / corr
    busy = min(view.prefill_load_tokens_per_s / prefill_rate, MAX_PREFILL_SHARE)
    prefill_ahead = (view.waiting_prefill_tokens + prompt) / prefill_rate
    wait_for_slot = 0.0
    over = view.running + view.waiting + 1 - view.max_batch
    kv_short = view.kv_used_tokens + req.expected_tokens - view.kv_capacity_tokens
    if (over > 0 or kv_short > 0) and view.running:
        mean_left = view.decode_tokens_left / view.running
        # Sequences finish spread over their remaining length; waiting for the `over`-th
        # slot takes that share of the mean remaining decode time.
        share = max(over / view.running, kv_short / max(view.kv_used_tokens, 1), 0)
        wait_for_slot = min(share, 1.0) * mean_left * step
    tpot = step / (1 - busy)
    if not view.chunked_prefill:
        tpot += prefill_ahead / max(req.output_guess, 1)
    return Estimate(wait_for_slot + prefill_ahead, tpot, step)
