"""Eligibility and the routing decision: which replicas may take a request, then which one.

The outcome names why no replica was chosen, so the HTTP edge can answer with the right
status (422 for an unsatisfiable precision, 400 for a prompt longer than any pool's
context, 429 when every eligible queue is full) and the simulator can count rejections.
A chosen replica comes with the reason it was the one, for the ingress's
orchestrator_routing_decisions_total{reason}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from orchestrator.router.context import ReplicaView, RouteRequest
from orchestrator.router.policies import Policy

OK = "ok"
UNSATISFIABLE_PRECISION = "unsatisfiable_precision"
CONTEXT_TOO_LONG = "context_too_long"
OVERLOADED = "overloaded"

# Why a request went where it did, in this order of precedence:
PINNED = "pinned"  # the model name pinned one precision
SPILL = "spill"  # a lower precision than the best one that could hold it (load, or policy)
FLOOR = "floor"  # an x-min-precision floor applied, and the best it allowed took it
PREFERRED = "preferred"  # unconstrained, on the best precision that could hold it


@dataclass(frozen=True)
class RouteDecision:
    outcome: str
    replica: ReplicaView | None = None
    detail: str = ""
    reason: str = ""  # a failure's outcome, or PINNED, SPILL, FLOOR, PREFERRED

    def __post_init__(self):
        if not self.reason and self.outcome != OK:
            object.__setattr__(self, "reason", self.outcome)


def reason(req: RouteRequest, chosen: ReplicaView, fitting: Sequence[ReplicaView]) -> str:
    """Why ``chosen`` took ``req``; ``fitting``: the replicas that could hold it, full
    queues included, so a request pushed down by a full queue counts as a spill too."""
    if req.pinned_precision is not None:
        return PINNED
    if chosen.quality_rank < max(r.quality_rank for r in fitting):
        return SPILL
    return FLOOR if req.min_rank is not None else PREFERRED


def route(policy: Policy, req: RouteRequest, replicas: Sequence[ReplicaView], *,
          bounded: bool = True) -> RouteDecision:
    """``bounded=False`` lets the request past full queues: for a retry after a replica
    failed it, which the system owes the client and must not turn into a 429."""
    precise = [r for r in replicas if req.accepts(r.precision, r.quality_rank, r.pool)]
    if not precise:
        have = sorted({r.precision for r in replicas})
        parts = ([f"precision {req.pinned_precision}"] if req.pinned_precision else []) + (
            [f"quality rank >= {req.min_rank} (the precision floor)"]
            if req.min_rank is not None else [])
        want = " with ".join(parts)
        return RouteDecision(UNSATISFIABLE_PRECISION,
                             detail=f"no pool serves {want}; pools serve {', '.join(have)}")
    fitting = [r for r in precise if req.total_tokens <= r.max_context]
    if not fitting:
        longest = max(r.max_context for r in precise)
        return RouteDecision(
            CONTEXT_TOO_LONG,
            detail=f"prompt {req.prompt_tokens} + max_tokens {req.max_tokens} = "
                   f"{req.total_tokens} tokens exceeds the largest context {longest}")
    room = [r for r in fitting if not r.queue_full] if bounded else fitting
    if not room:
        return RouteDecision(OVERLOADED, detail="every eligible replica's queue is full")
    chosen = policy.choose(req, room)
    return RouteDecision(OK, chosen, reason=reason(req, chosen, fitting))
