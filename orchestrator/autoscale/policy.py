"""Autoscaling across unequal pools (pure): from each pool's recent load and its planned
capacity, decide the replicas each pool should have, and why.

- Load is normalized by capacity, on two signals, and the larger one counts: in-flight
  sequences over what the pool's replicas decode at once (the plan's batch per replica),
  and queued prompt tokens over what they prefill in `prefill_backlog_s`. A 2x3090
  replica and a 4x A100 replica are not counted alike, and a pool whose queue of long
  prompts sets its time to first token does not look idle for having few sequences.
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
    prefill_tokens_per_s_per_replica: float = 0.0  # plan's estimate; 0: signal off


@dataclass(frozen=True)
class PoolLoad:
    replicas: int
    running: int
    waiting: int
    waiting_pinned: int = 0  # of `waiting`, requests pinned to this pool's precision
    waiting_prefill_tokens: int = 0  # prompt tokens queued or mid-prefill, pool-wide


# A decision's cause, one word for a metric's label (the reason's text has numbers):
STEADY = "steady"  # no signal asks for a change
SEQUENCES = "sequences"  # in-flight sequences need more replicas
PREFILL_BACKLOG = "prefill_backlog"  # queued prompt tokens need more replicas
SPILL = "spill"  # unpinned waiting on a pool at its maximum
IDLE = "idle"  # low utilization for down_delay_s: one replica goes
OVERRIDE = "override"  # `orchestrator scale` (serve/autoscaler.py applies it)
CAUSES = (STEADY, SEQUENCES, PREFILL_BACKLOG, SPILL, IDLE, OVERRIDE)


@dataclass(frozen=True)
class Decision:
    pool: str
    current: int
    desired: int
    reason: str
    cause: str = STEADY  # one of CAUSES


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
    # Target drain time of a pool's queued prompt tokens. A request arriving now waits for
    # that queue before its own prefill starts, so that drain time is TTFT it pays; 1.0 s is
    # half the 2 s TTFT objective, leaving the other half for its own prompt and a slot.
    prefill_backlog_s: float = 1.0


def utilization(s: PoolSpec, load: PoolLoad, knobs: Knobs, replicas: int) -> float:
    """The larger of the two signals, in the sequence signal's units: a prefill backlog
    of `prefill_backlog_s` reads as `target_utilization`, so one band holds for both."""
    return max(_sequences(s, load, replicas),
               _backlog_s(s, load, replicas) / knobs.prefill_backlog_s
               * knobs.target_utilization)


def _sequences(s: PoolSpec, load: PoolLoad, replicas: int) -> float:
    return (load.running + load.waiting) / (max(replicas, 1) * s.sequences_per_replica)


def _backlog_s(s: PoolSpec, load: PoolLoad, replicas: int) -> float:
    """Seconds the pool's replicas take to prefill what is queued."""
    if s.prefill_tokens_per_s_per_replica <= 0:
        return 0.0
    return load.waiting_prefill_tokens / (max(replicas, 1)
                                          * s.prefill_tokens_per_s_per_replica)


def _need(s: PoolSpec, load: PoolLoad, knobs: Knobs) -> tuple[int, str, str]:
    """Replicas the pool's own load needs, why, and which signal says so."""
    inflight = load.running + load.waiting
    by_seq = math.ceil(inflight / (knobs.target_utilization * s.sequences_per_replica)) \
        if inflight else 0
    rate = s.prefill_tokens_per_s_per_replica
    by_prefill = math.ceil(load.waiting_prefill_tokens / (rate * knobs.prefill_backlog_s)) \
        if rate > 0 and load.waiting_prefill_tokens else 0
    if by_prefill > by_seq:
        return by_prefill, PREFILL_BACKLOG, (
            f"prefill backlog {_backlog_s(s, load, load.replicas):.1f} s > "
            f"{knobs.prefill_backlog_s:.1f} s: {load.waiting_prefill_tokens} prompt tokens "
            f"need {by_prefill} replica(s) at {rate:.0f} tok/s each")
    return by_seq, SEQUENCES, (
        f"sequences {_sequences(s, load, load.replicas):.0%} > "
        f"{knobs.target_utilization:.0%}: {inflight} in flight need {by_seq} replica(s) "
        f"of {s.sequences_per_replica} sequences each")


def decide(specs: list[PoolSpec], loads: dict[str, PoolLoad], now: float,
           state: PolicyState, knobs: Knobs = Knobs()) -> list[Decision]:
    desired = {s.name: loads[s.name].replicas for s in specs}
    reasons: dict[str, str] = {}
    causes: dict[str, str] = {}
    # 1. each pool's own load, normalized by its capacity (sequences or prefill backlog)
    for s in specs:
        load = loads[s.name]
        need, cause, why = _need(s, load, knobs)
        if need > load.replicas and _cooled(state, s.name, now, knobs.up_cooldown_s):
            desired[s.name] = need
            reasons[s.name], causes[s.name] = why, cause
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
            causes[o.name] = SPILL
    # 3. scale down the least useful pool first, one replica, after a sustained lull
    for s in sorted(specs, key=lambda p: (p.quality_rank, p.tokens_per_s_per_replica)):
        load = loads[s.name]
        if s.name in reasons or s.name in wanted:
            state.low_since.pop(s.name, None)
            continue
        util = utilization(s, load, knobs, load.replicas)
        if util < knobs.low_utilization and load.replicas > _floor(s):
            since = state.low_since.setdefault(s.name, now)
            if now - since >= knobs.down_delay_s:
                desired[s.name] = load.replicas - 1
                reasons[s.name] = (
                    f"utilization {util:.0%} below {knobs.low_utilization:.0%} for "
                    f"{now - since:.0f} s (sequences "
                    f"{_sequences(s, load, load.replicas):.0%}, prefill backlog "
                    f"{_backlog_s(s, load, load.replicas):.1f} s)")
                causes[s.name] = IDLE
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
        out.append(Decision(s.name, cur, want, why, causes.get(s.name, STEADY)))
    return out


def _floor(s: PoolSpec) -> int:
    return s.min_replicas if s.scale_to_zero else max(s.min_replicas, 1)


def _cooled(state: PolicyState, name: str, now: float, cooldown: float) -> bool:
    return now - state.last_change.get(name, -math.inf) >= cooldown
