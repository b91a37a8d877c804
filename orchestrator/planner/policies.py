"""Plan-selection policies: each ranks the feasible candidates of one node type.

A policy returns a sort key; the planner takes the largest. Ties fall through to the
backend preference order, so the result is deterministic.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from orchestrator.errors import UnknownNameError


class Scored(Protocol):
    quality_rank: int
    node_tokens_per_s: float
    single_stream_tokens_per_s: float


class Policy:
    name: str = ""
    description: str = ""

    def pick(self, candidates: Sequence[Scored]) -> Scored:
        return max(candidates, key=self.key)

    def key(self, c: Scored) -> tuple:
        raise NotImplementedError


class QualityPolicy(Policy):
    name = "quality"
    description = "highest precision that fits with the required context; ties by throughput"

    def key(self, c):
        return (c.quality_rank, c.node_tokens_per_s, c.single_stream_tokens_per_s)


class ThroughputPolicy(Policy):
    name = "throughput"
    description = "most batched tokens/s per node; ties by precision"

    def key(self, c):
        return (round(c.node_tokens_per_s, 6), c.quality_rank, c.single_stream_tokens_per_s)


class BalancedPolicy(Policy):
    name = "balanced"
    description = ("highest precision among candidates within half of the best batched "
                   "tokens/s per node; ties by throughput")
    share = 0.5

    def pick(self, candidates):
        best = max(c.node_tokens_per_s for c in candidates)
        near = [c for c in candidates if c.node_tokens_per_s >= self.share * best]
        return max(near, key=QualityPolicy().key)

    def key(self, c):  # used only for ordering the runners-up in explanations
        return QualityPolicy().key(c)


POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (QualityPolicy, ThroughputPolicy, BalancedPolicy)
}


def make(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise UnknownNameError("planner policy", name, list(POLICIES)) from None
