"""The simulator with the autoscaling policy in the loop: the same decider Serve runs
(autoscale/policy.py), ticking on simulated time. New replicas serve after a cold start;
removed ones stop taking requests and leave once they have drained. Replica-seconds count
every replica from the moment it is asked for until it has left, so the figure compares
with a fixed deployment's replicas x duration."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.autoscale.policy import Knobs, PolicyState, PoolLoad, PoolSpec, decide
from orchestrator.defaults import MAX_WAITING
from orchestrator.models.precision import PRECISIONS
from orchestrator.planner.plan import Plan
from orchestrator.router.context import RouteRequest
from orchestrator.router.policies import Policy
from orchestrator.router.route import OVERLOADED
from orchestrator.sim.decisions import DecisionLog
from orchestrator.sim.error import SpeedError
from orchestrator.sim.events import CLIENT_MAX_TOKENS, Simulation, new_replica
from orchestrator.sim.replica import SimReplica, SimRequest


@dataclass
class ScalingLog:
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (t, pool, replicas)
    replica_seconds: float = 0.0
    by_pool: dict[str, float] = field(default_factory=dict)  # replica-seconds per pool
    peak: dict[str, int] = field(default_factory=dict)  # most replicas a pool ever held


class AutoscaledSimulation(Simulation):
    def __init__(self, plan: Plan, specs: list[PoolSpec], initial: dict[str, int],
                 policy: Policy, *, slo_ttft_s: float, slo_tpot_s: float,
                 knobs: Knobs = Knobs(), tick_s: float = 5.0, cold_start_s: float = 60.0,
                 max_waiting: int = MAX_WAITING, error: SpeedError | None = None,
                 max_tokens: int = CLIENT_MAX_TOKENS, decisions: DecisionLog | None = None):
        self.templates = {n.node_type: n for n in plan.pools()}
        self.specs = [s for s in specs if s.name in self.templates]
        self.knobs, self.tick_s, self.cold_start_s = knobs, tick_s, cold_start_s
        self.max_waiting, self.error = max_waiting, error
        self.serial = 0
        replicas = [self._new(s.name) for s in self.specs for _ in range(initial[s.name])]
        super().__init__(replicas, policy, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s,
                         max_tokens=max_tokens, decisions=decisions)
        self.starting: list[tuple[float, SimReplica]] = []
        self.draining: list[SimReplica] = []
        self.refused: dict[str, float] = {}
        self.refused_pinned: dict[str, float] = {}
        self.state = PolicyState()
        self.log = ScalingLog()
        self.last_t = 0.0
        self.next_tick = tick_s

    def _new(self, pool: str) -> SimReplica:
        self.serial += 1
        return new_replica(self.templates[pool], f"{pool}/{self.serial}", self.error,
                           self.max_waiting)

    def provisioned(self, pool: str | None = None) -> int:
        every = self.replicas + [r for _, r in self.starting] + self.draining
        return sum(pool is None or r.view.pool == pool for r in every)

    def _advance(self, now: float, schedule) -> None:
        while self.next_tick <= now:
            self._account(self.next_tick)
            self._tick(self.next_tick, schedule)
            self.next_tick += self.tick_s
        self._account(now)

    def _account(self, t: float) -> None:
        dt = t - self.last_t
        for s in self.specs:
            self.log.by_pool[s.name] = self.log.by_pool.get(s.name, 0.0) \
                + dt * self.provisioned(s.name)
        self.log.replica_seconds += dt * self.provisioned()
        self.last_t = t

    def _arrive(self, r: SimRequest, schedule, rejected) -> None:
        super()._arrive(r, schedule, rejected)
        if r.rejected == OVERLOADED:
            best = self._best_pool(r.pinned_precision)
            if best:
                self.refused[best] = self.refused.get(best, 0) + 1
                if r.pinned_precision:
                    self.refused_pinned[best] = self.refused_pinned.get(best, 0) + 1

    def _best_pool(self, pinned: str | None) -> str | None:
        req = RouteRequest(0, 0, pinned_precision=pinned)
        fits = [s for s in self.specs if req.accepts(s.precision, s.quality_rank)]
        return max(fits, key=lambda s: PRECISIONS[s.precision].rank).name if fits else None

    def _tick(self, now: float, schedule) -> None:
        ready = [r for t, r in self.starting if t <= now]
        self.starting = [(t, r) for t, r in self.starting if t > now]
        for r in ready:
            self.replicas.append(r)
            self.by_id[r.view.id] = r
        self.draining = [r for r in self.draining if not self._idle(r)]
        loads = {}
        for s in self.specs:
            mine = [r.snapshot() for r in self.replicas if r.view.pool == s.name]
            pinned_waiting = sum(1 for r in self.replicas if r.view.pool == s.name
                                 for q in r.waiting if q.pinned_precision)
            loads[s.name] = PoolLoad(
                replicas=sum(1 for r in self.replicas if r.view.pool == s.name)
                + sum(1 for _, r in self.starting if r.view.pool == s.name),
                running=sum(v.running for v in mine),
                waiting=sum(v.waiting for v in mine) + round(self.refused.get(s.name, 0)),
                waiting_pinned=pinned_waiting + round(self.refused_pinned.get(s.name, 0)),
                # what the live replicas report (serve/pool.py); refused prompts not counted
                waiting_prefill_tokens=sum(r.view.waiting_prefill_tokens for r in self.replicas
                                           if r.view.pool == s.name))
        self.refused, self.refused_pinned = {}, {}
        by_name = {s.name: s for s in self.specs}
        for d in decide(self.specs, loads, now, self.state, self.knobs):
            delta = d.desired - d.current
            for _ in range(max(delta, 0)):
                # a draining replica still holds its GPU group, as in Ray
                if self.provisioned(d.pool) < by_name[d.pool].max_replicas:
                    self.starting.append((now + self.cold_start_s, self._new(d.pool)))
            for _ in range(max(-delta, 0)):
                self._retire(d.pool)
            if delta:
                self.log.events.append((now, d.pool, d.desired))
            self.log.peak[d.pool] = max(self.log.peak.get(d.pool, 0),
                                        self.provisioned(d.pool))

    def _retire(self, pool: str) -> None:
        starting = [(t, r) for t, r in self.starting if r.view.pool == pool]
        if starting:  # cancel a replica that has not come up yet
            self.starting.remove(starting[-1])
            return
        mine = [r for r in self.replicas if r.view.pool == pool]
        if not mine:
            return
        r = min(mine, key=lambda x: (x.snapshot().running + x.snapshot().waiting))
        self.replicas.remove(r)  # no new requests; it finishes what it has
        self.draining.append(r)

    @staticmethod
    def _idle(r: SimReplica) -> bool:
        return not (r.waiting or r.running or r.prefilling)

    def run(self, trace):
        done = super().run(trace)
        self._account(max([r.finish_s or r.arrival_s for r in done], default=0.0))
        return done
