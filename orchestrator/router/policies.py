"""Routing policies: ours and the baselines the simulator compares it against.

Each policy is a small class in one registry; ``make(name)`` builds one. A policy only
chooses among replicas that ``route()`` already found eligible (precision, context,
queue room), so every policy answers the same question.
"""

from __future__ import annotations

import random
from typing import Sequence

from orchestrator.errors import UnknownNameError
from orchestrator.router.context import ReplicaView, RouteRequest
from orchestrator.router.estimate import estimate


class Policy:
    name = ""
    description = ""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def choose(self, req: RouteRequest, replicas: Sequence[ReplicaView]) -> ReplicaView:
        raise NotImplementedError


class RoundRobin(Policy):
    name = "round_robin"
    description = "each eligible replica in turn"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.turn = 0

    def choose(self, req, replicas):
        self.turn += 1
        return replicas[self.turn % len(replicas)]


class LeastOutstanding(Policy):
    name = "least_outstanding"
    description = "fewest running plus waiting requests"

    def choose(self, req, replicas):
        return min(replicas, key=lambda r: (r.outstanding, self.rng.random()))


class PowerOfTwo(Policy):
    name = "power_of_two"
    description = "two replicas at random, the one with fewer outstanding (Ray Serve's default)"

    def choose(self, req, replicas):
        if len(replicas) == 1:
            return replicas[0]
        a, b = self.rng.sample(list(replicas), 2)
        return a if a.outstanding <= b.outstanding else b


class CapacityLeastLoad(Policy):
    name = "capacity_least_load"
    description = "least outstanding divided by the replica's planned capacity (SkyServe)"

    def choose(self, req, replicas):
        return min(replicas, key=lambda r: ((r.outstanding + 1) / r.capacity_tokens_per_s,
                                            self.rng.random()))


class SizeAwarePowerOfTwo(PowerOfTwo):
    name = "size_aware_p2c"
    description = ("power of two among replicas that can prefill the prompt within the TTFT "
                   "objective when idle; all replicas if none can")

    def choose(self, req, replicas):
        fast = [r for r in replicas
                if req.prompt_tokens / r.speeds.prefill_tokens_per_s() <= req.slo_ttft_s]
        return super().choose(req, fast or replicas)


class SLOAware(Policy):
    """Ours. Estimate each replica's TTFT and TPOT for this request (prefill and decode
    speed from the plan corrected by what the replica measured, queue, batch, KV room,
    recent prefill load, the predicted output length, and the prompt tokens the replica
    must compute beyond its expected prefix-cache hit). Replicas that would take long to
    prefill the prompt are left to faster ones (``heavy_prefill_share``). Among replicas
    expected to meet both objectives, keep the request on the highest precision while that
    replica is comfortably inside them; once it is not, give the request to the least
    capable replica that still meets them, saving the fast prefill for the long prompts
    only it can serve. When no replica is expected to meet them: earliest finish."""

    name = "slo_aware"
    description = ("highest precision while it is comfortably within TTFT and TPOT, else the "
                   "least capable replica that still meets them; earliest finish otherwise")
    margin = 0.8  # estimates are optimistic: keep headroom before the objective
    prefer_below = 0.7  # pressure up to which the highest precision keeps the request

    # A prompt whose prefill would take a slower replica more than this share of the TTFT
    # objective is left to the fastest: the prefill stalls every sequence decoding there,
    # a cost the request's own estimate does not see, and the estimate is least sure
    # where the replica is slow. 0.75 against 0.5 in the simulator (benchmarks/README.md,
    # Routing goodput): equal or better in every error column on both traces, and on a
    # held-out slice of the Azure trace (its requests 3,000-6,000).
    heavy_prefill_share = 0.75

    def choose(self, req, replicas):
        def prefill_s(r):
            rate = r.speeds.prefill_tokens_per_s() * max(r.speed_correction, 1e-3)
            return (req.prompt_tokens - r.cached_tokens(req)) / rate

        # within 25 % of the fastest counts as fast: equal replicas measure a little apart
        fastest = 1.25 * min(prefill_s(r) for r in replicas)
        light = [r for r in replicas
                 if prefill_s(r) <= max(self.heavy_prefill_share * req.slo_ttft_s, fastest)]
        scored = [(r, estimate(req, r)) for r in light]

        def finish(p):
            return p[1].finish_now_s(req.output_guess)

        ok = [p for p in scored if p[1].meets(req, self.margin)]
        if not ok:
            return min(scored, key=lambda p: (finish(p), -p[0].quality_rank))[0]
        top = max(r.quality_rank for r, _ in ok)
        best = min((p for p in ok if p[0].quality_rank == top), key=finish)
        if best[1].pressure(req) <= self.prefer_below:
            return best[0]
        return min(ok, key=lambda p: (p[0].speeds.prefill_tokens_per_s(), finish(p)))[0]


class StaticSplit(Policy):
    name = "static_split"
    description = "a fixed share of traffic per pool (weights), random within the pool"

    def __init__(self, seed: int = 0, weights: dict[str, float] | None = None):
        super().__init__(seed)
        self.weights = weights or {}

    def choose(self, req, replicas):
        pools: dict[str, list[ReplicaView]] = {}
        for r in replicas:
            pools.setdefault(r.pool, []).append(r)
        names = sorted(pools)
        weights = [self.weights.get(p, 1.0) for p in names]
        if sum(weights) <= 0:
            weights = [1.0] * len(names)
        pool = self.rng.choices(names, weights=weights)[0]
        return min(pools[pool], key=lambda r: (r.outstanding, self.rng.random()))


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (
    SLOAware, RoundRobin, LeastOutstanding, PowerOfTwo, CapacityLeastLoad,
    SizeAwarePowerOfTwo, StaticSplit)}
DEFAULT_POLICY = SLOAware.name


def make(name: str, seed: int = 0, **kwargs) -> Policy:
    try:
        cls = POLICIES[name]
    except KeyError:
        raise UnknownNameError("routing policy", name, list(POLICIES)) from None
    return cls(seed=seed, **kwargs)


# The prefix-aware baselines subclass Policy, so their module imports this one and adds
# them to POLICIES itself; a plain import keeps that cycle safe whichever module loads first.
import orchestrator.router.baselines  # noqa: E402,F401
