"""Planning objectives: each ranks the feasible candidates of one node type.

An objective returns a sort key; the planner takes the largest. Ties fall through to the
backend preference order, so the result is deterministic. (These were called "policies"
before; the word now belongs to routing and autoscaling alone.)
"""

from __future__ import annotations

from typing import Protocol, Sequence

from orchestrator.errors import UnknownNameError


class Scored(Protocol):
    quality_rank: int
    node_tokens_per_s: float
    single_stream_tokens_per_s: float


class Objective:
    name: str = ""
    description: str = ""

    def pick(self, candidates: Sequence[Scored]) -> Scored:
        return max(candidates, key=self.key)

    def key(self, c: Scored) -> tuple:
        raise NotImplementedError


class QualityObjective(Objective):
    name = "quality"
    description = "highest precision that fits with the required context; ties by throughput"

    def key(self, c):
        return (c.quality_rank, c.node_tokens_per_s, c.single_stream_tokens_per_s)


class ThroughputObjective(Objective):
    name = "throughput"
    description = "most batched tokens/s per node; ties by precision"

    def key(self, c):
        return (round(c.node_tokens_per_s, 6), c.quality_rank, c.single_stream_tokens_per_s)


class BalancedObjective(Objective):
    name = "balanced"
    description = ("highest precision among candidates within half of the best batched "
                   "tokens/s per node; ties by throughput")
    share = 0.5

    def pick(self, candidates):
        best = max(c.node_tokens_per_s for c in candidates)
        near = [c for c in candidates if c.node_tokens_per_s >= self.share * best]
        return max(near, key=QualityObjective().key)

    def key(self, c):  # used only for ordering the runners-up in explanations
        return QualityObjective().key(c)


OBJECTIVES: dict[str, type[Objective]] = {
    o.name: o for o in (QualityObjective, ThroughputObjective, BalancedObjective)
}
DEFAULT_OBJECTIVE = QualityObjective.name


def make(name: str) -> Objective:
    try:
        return OBJECTIVES[name]()
    except KeyError:
        raise UnknownNameError("planner objective", name, list(OBJECTIVES)) from None
