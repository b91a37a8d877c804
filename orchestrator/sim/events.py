"""The simulator's event loop: arrivals are routed by a live routing policy; replicas wake
when their phase ends. Deterministic for a given seed (ties break by event order). The
simulated engines themselves are the replicas (replica.py), timed by the planner's model."""

from __future__ import annotations

import heapq
from typing import Callable, Iterable

from orchestrator.defaults import MAX_WAITING
from orchestrator.planner.plan import Plan
from orchestrator.router.context import RouteRequest, view_from_plan
from orchestrator.router.policies import Policy
from orchestrator.router.route import OK, route
from orchestrator.sim.replica import SimReplica, SimRequest
from orchestrator.sim.trace import TraceRequest


def replicas_from_plan(plan: Plan, pools: Iterable[str] | None = None,
                       max_waiting: int = MAX_WAITING) -> list[SimReplica]:
    wanted = set(pools) if pools is not None else None
    out = []
    for n in plan.pools():
        if wanted is not None and n.node_type not in wanted:
            continue
        for i in range(n.replicas):
            out.append(SimReplica(view_from_plan(n, f"{n.node_type}/{i}",
                                                 max_waiting=max_waiting)))
    return out


class Simulation:
    def __init__(self, replicas: list[SimReplica], policy: Policy, *, slo_ttft_s: float,
                 slo_tpot_s: float, on_progress: Callable[[int], None] | None = None):
        if not replicas:
            raise ValueError("a simulation needs at least one replica")
        self.replicas = replicas
        self.policy = policy
        self.slo_ttft_s, self.slo_tpot_s = slo_ttft_s, slo_tpot_s
        self.on_progress = on_progress
        self.by_id = {r.view.id: r for r in replicas}

    def run(self, trace: list[TraceRequest]) -> list[SimRequest]:
        reqs = [SimRequest(i, t.arrival_s, t.prompt_tokens, t.output_tokens, t.output_tokens,
                           t.pinned_precision) for i, t in enumerate(trace)]
        heap: list = []
        seq = 0
        finished: list[SimRequest] = []
        rejected: list[SimRequest] = []

        def schedule(replica: SimReplica, when: float | None):
            nonlocal seq
            if when is not None:
                seq += 1
                heapq.heappush(heap, (when, seq, replica.view.id, replica.version))

        i = 0
        while i < len(reqs) or heap:
            arrival = i < len(reqs) and (not heap or reqs[i].arrival_s <= heap[0][0])
            self._advance(reqs[i].arrival_s if arrival else heap[0][0], schedule)
            if arrival:
                r = reqs[i]
                i += 1
                self._arrive(r, schedule, rejected)
                if self.on_progress and i % 500 == 0:
                    self.on_progress(i)
                continue
            when, _, rid, version = heapq.heappop(heap)
            replica = self.by_id[rid]
            if version != replica.version:
                continue  # superseded by a re-plan
            schedule(replica, replica.wake(when, finished))
        if self.on_progress:
            self.on_progress(len(reqs))
        return reqs

    def _advance(self, now: float, schedule) -> None:
        """Called before each event; the autoscaled simulation runs its ticks here."""

    def _arrive(self, r: SimRequest, schedule, rejected) -> None:
        req = RouteRequest(r.prompt_tokens, r.max_tokens, pinned_precision=r.pinned_precision,
                           slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s)
        decision = route(self.policy, req, [x.snapshot() for x in self.replicas])
        if decision.outcome != OK:
            r.rejected = decision.outcome
            rejected.append(r)
            return
        replica = self.by_id[decision.replica.id]
        r.replica, r.pool = replica.view.id, replica.view.pool
        r.precision = replica.view.precision
        schedule(replica, replica.enqueue(r, r.arrival_s))
