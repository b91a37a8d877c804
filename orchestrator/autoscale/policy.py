"""Autoscaling across unequal pools (pure): from each pool's recent load and its planned
capacity, decide the replicas each pool should have, and why.

- Load is normalized by capacity: in-flight sequences over what the pool's replicas can
  decode at once (the plan's batch per replica), so a 2x3090 replica and a 4x A100 replica
  are not counted alike.
- Waiting demand goes first to the pool that serves it best and can still grow: a pinned
  precision's own pool; unpinned demand to the highest precision, then the most capacity
  per replica.
- Scale down the least useful pool first (lowest precision, then least capacity), one
  replica at a time, only after the load has stayed low for `down_delay_s`.
- Bounds: min and max per pool from the spec, and max never above the GPU groups of that
  type in the inventory; min 0 only where the pool allows scale-to-zero.
The actuator (Ray Serve's autoscaling hook) applies the decisions; this code only decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolSpec:
    name: str
    precision: str
    quality_rank: int
    sequences_per_replica: int  # what one replica decodes at once (plan's batch)
    tokens_per_s_per_replica: float  # plan's batched estimate
    min_replicas: int
    max_replicas: int  # already capped by the inventory
    scale_to_zero: bool = False


@dataclass(frozen=True)
class PoolLoad:
    replicas: int
    running: int
    waiting: int
    waiting_pinned: int = 0  # of `waiting`, requests pinned to this pool's precision


@dataclass(frozen=True)
class Decision:
    pool: str
    current: int
    desired: int
    reason: str


@dataclass
class PolicyState:
    low_since: dict[str, float] = field(default_factory=dict)
    last_change: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Knobs:
    target_utilization: float = 0.7  # in-flight / capacity the pool should run at
    low_utilization: float = 0.3  # below this, a replica may go
    up_cooldown_s: float = 10.0
    down_delay_s: float = 120.0


def decide(specs: list[PoolSpec], loads: dict[str, PoolLoad], now: float,
           state: PolicyState, knobs: Knobs = Knobs()) -> list[Decision]:
    desired = {s.name: loads[s.name].replicas for s in specs}
    reasons: dict[str, str] = {}
    # 1. each pool's own load, normalized by its capacity
    for s in specs:
        load = loads[s.name]
        inflight = load.running + load.waiting
        need = math.ceil(inflight / (knobs.target_utilization * s.sequences_per_replica)) \
            if inflight else 0
        if need > load.replicas and _cooled(state, s.name, now, knobs.up_cooldown_s):
            desired[s.name] = need
            reasons[s.name] = (f"{inflight} in flight need {need} replica(s) at "
                               f"{knobs.target_utilization:.0%} of {s.sequences_per_replica} "
                               "sequences each")
    # 2. unpinned waiting that a capped pool cannot absorb goes to the best pool that can grow
    wanted: set[str] = set()
    for s in specs:
        load = loads[s.name]
        spill = load.waiting - load.waiting_pinned
        if spill <= 0 or desired[s.name] < s.max_replicas:
            continue
        others = sorted((o for o in specs if o.name != s.name
                         and desired[o.name] < o.max_replicas),
                        key=lambda o: (-o.quality_rank, -o.tokens_per_s_per_replica))
        if others:
            o = others[0]
            # wanted either way: a pool that spill-over needs does not shrink meanwhile
            state.low_since.pop(o.name, None)
            wanted.add(o.name)
            if not _cooled(state, o.name, now, knobs.up_cooldown_s):
                continue
            extra = math.ceil(spill / (knobs.target_utilization * o.sequences_per_replica))
            desired[o.name] = desired[o.name] + extra
            reasons[o.name] = (f"{spill} unpinned waiting on {s.name}, which is at its "
                               f"maximum {s.max_replicas}")
    # 3. scale down the least useful pool first, one replica, after a sustained lull
    for s in sorted(specs, key=lambda p: (p.quality_rank, p.tokens_per_s_per_replica)):
        load = loads[s.name]
        if s.name in reasons or s.name in wanted:
            state.low_since.pop(s.name, None)
            continue
        cap = max(load.replicas, 1) * s.sequences_per_replica
        util = (load.running + load.waiting) / cap
        if util < knobs.low_utilization and load.replicas > _floor(s):
            since = state.low_since.setdefault(s.name, now)
            if now - since >= knobs.down_delay_s:
                desired[s.name] = load.replicas - 1
                reasons[s.name] = (f"utilization {util:.0%} below "
                                   f"{knobs.low_utilization:.0%} for {now - since:.0f} s")
                state.low_since[s.name] = now
                break  # one pool at a time, the least useful first
        else:
            state.low_since.pop(s.name, None)
    out = []
    for s in specs:
        cur = loads[s.name].replicas
        want = min(max(desired[s.name], _floor(s)), s.max_replicas)
        why = reasons.get(s.name, "steady")
        if desired[s.name] > s.max_replicas:
            why += f"; capped at {s.max_replicas} (GPU groups in the inventory)"
        if want != cur:
            state.last_change[s.name] = now
        out.append(Decision(s.name, cur, want, why))
    return out


def _floor(s: PoolSpec) -> int:
    return s.min_replicas if s.scale_to_zero else max(s.min_replicas, 1)


def _cooled(state: PolicyState, name: str, now: float, cooldown: float) -> bool:
    return now - state.last_change.get(name, -math.inf) >= cooldown
