"""`simulate --trace-decisions FILE`: every routing choice, with each candidate's estimates,
and what then happened, one JSON object per line, so a regression can be traced to the
decisions that caused it.

A line: the request (prompt tokens, max_tokens, predicted and true output, block count),
the outcome and chosen replica, and per candidate the estimated TTFT, TPOT and finish, the
prefix tokens it was expected to have cached and its load as the router saw it; then the
request's true TTFT, TPOT, cached tokens and whether it met both objectives.
"""

from __future__ import annotations

import json
from typing import IO

from orchestrator.router.estimate import estimate


def _r(x: float | None, nd: int = 4):
    return None if x is None else round(x, nd)


class DecisionLog:
    def __init__(self, out: IO[str], policy: str, slo_ttft_s: float, slo_tpot_s: float):
        self.out, self.policy = out, policy
        self.slo_ttft_s, self.slo_tpot_s = slo_ttft_s, slo_tpot_s
        self.lines: dict[int, dict] = {}

    def decided(self, r, req, views, decision) -> None:
        cands = []
        for v in views:
            e = estimate(req, v)
            cands.append({
                "replica": v.id, "pool": v.pool, "precision": v.precision,
                "ttft_s": _r(e.ttft_s), "tpot_s": _r(e.tpot_s),
                "finish_s": _r(e.finish_now_s(req.output_guess)),
                "cached_tokens": v.cached_tokens(req), "running": v.running,
                "waiting": v.waiting, "waiting_prefill_tokens": v.waiting_prefill_tokens,
                "kv_use": _r(v.kv_use, 3), "speed_correction": _r(v.speed_correction, 3)})
        self.lines[r.id] = {
            "id": r.id, "policy": self.policy, "arrival_s": _r(r.arrival_s, 3),
            "prompt_tokens": r.prompt_tokens, "max_tokens": r.max_tokens,
            "expected_output": req.output_guess, "blocks": len(req.block_hashes),
            "outcome": decision.outcome,
            "chosen": decision.replica.id if decision.replica else None,
            "candidates": cands}

    def outcomes(self, reqs) -> None:
        """After the run: what actually happened to each request, then write every line."""
        for r in reqs:
            line = self.lines.get(r.id)
            if line is None:
                continue
            done = r.finish_s is not None
            line["actual"] = {
                "output_tokens": r.output_tokens, "cached_tokens": r.cached,
                "ttft_s": _r(r.ttft_s) if done else None,
                "tpot_s": _r(r.tpot_s) if done else None,
                "met_slo": bool(done and r.ttft_s <= self.slo_ttft_s
                                and r.tpot_s <= self.slo_tpot_s)}
            self.out.write(json.dumps(line) + "\n")
        self.lines.clear()
