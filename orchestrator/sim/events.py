"""The simulator's event loop: arrivals are routed by a live routing policy; replicas wake
when their phase ends. Deterministic for a given seed (ties break by event order). The
simulated engines themselves are the replicas (replica.py), timed by the planner's model
and off from it by the scenario's speed error.

The router here knows what the live ingress knows and no more: the prompt's token count and
block hashes, the client's ``max_tokens``, an output length predicted from the requests
finished so far (router/predict.py), and per replica the prefix blocks it sent there
(router/prefix.py). Never the true output length, the replica's true cache or its true
speed."""

from __future__ import annotations

import heapq
from typing import Callable, Iterable

from orchestrator.defaults import MAX_WAITING
from orchestrator.planner.plan import NodePlan, Plan
from orchestrator.router.context import RouteRequest, view_from_plan
from orchestrator.router.policies import Policy
from orchestrator.router.predict import OutputPredictor
from orchestrator.router.route import OK, route
from orchestrator.sim.decisions import DecisionLog
from orchestrator.sim.error import SpeedError
from orchestrator.sim.replica import SimReplica, SimRequest
from orchestrator.sim.trace import TraceRequest

CLIENT_MAX_TOKENS = 4096  # what the simulated clients send: a fixed cap (traces carry none)


def new_replica(n: NodePlan, replica_id: str, error: SpeedError | None = None,
                max_waiting: int = MAX_WAITING) -> SimReplica:
    error = error or SpeedError()
    return SimReplica(view_from_plan(n, replica_id, max_waiting=max_waiting),
                      speed_factor=error.factor(n.node_type), noise=error.step_noise,
                      seed=error.replica_seed(replica_id))


def replicas_from_plan(plan: Plan, pools: Iterable[str] | None = None,
                       max_waiting: int = MAX_WAITING,
                       error: SpeedError | None = None) -> list[SimReplica]:
    wanted = set(pools) if pools is not None else None
    out = []
    for n in plan.pools():
        if wanted is not None and n.node_type not in wanted:
            continue
        for i in range(n.replicas):
            out.append(new_replica(n, f"{n.node_type}/{i}", error, max_waiting))
    return out


class Simulation:
    def __init__(self, replicas: list[SimReplica], policy: Policy, *, slo_ttft_s: float,
                 slo_tpot_s: float, on_progress: Callable[[int], None] | None = None,
                 max_tokens: int = CLIENT_MAX_TOKENS,
                 decisions: DecisionLog | None = None, router_prefix: bool = True):
        if not replicas:
            raise ValueError("a simulation needs at least one replica")
        self.replicas = replicas
        self.policy = policy
        self.slo_ttft_s, self.slo_tpot_s = slo_ttft_s, slo_tpot_s
        self.on_progress = on_progress
        self.by_id = {r.view.id: r for r in replicas}
        self.max_tokens = max_tokens
        self.predictor = OutputPredictor()
        self.decisions = decisions
        self.router_prefix = router_prefix  # False: the router ignores prefixes (ablation)

    def _request(self, i: int, t: TraceRequest) -> SimRequest:
        # The client's cap also ends the true output there, as an engine stops at max_tokens.
        cap = self.max_tokens
        return SimRequest(i, t.arrival_s, t.prompt_tokens, min(t.output_tokens, cap), cap,
                          t.pinned_precision, block_hashes=t.block_hashes)

    def run(self, trace: list[TraceRequest]) -> list[SimRequest]:
        reqs = [self._request(i, t) for i, t in enumerate(trace)]
        heap: list = []
        seq = 0
        finished: list[SimRequest] = []
        rejected: list[SimRequest] = []
        learned = 0  # finished requests the predictor has seen

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
            for done in finished[learned:]:
                self.predictor.observe(done.prompt_tokens, done.generated)
            learned = len(finished)
        if self.on_progress:
            self.on_progress(len(reqs))
        if self.decisions is not None:
            self.decisions.outcomes(reqs)
        return reqs

    def _advance(self, now: float, schedule) -> None:
        """Called before each event; the autoscaled simulation runs its ticks here."""

    def _arrive(self, r: SimRequest, schedule, rejected) -> None:
        r.expected_output = self.predictor.predict(r.prompt_tokens, r.max_tokens)
        req = RouteRequest(r.prompt_tokens, r.max_tokens, pinned_precision=r.pinned_precision,
                           slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s,
                           expected_output=r.expected_output,
                           block_hashes=r.block_hashes if self.router_prefix else ())
        views = [x.snapshot() for x in self.replicas]
        decision = route(self.policy, req, views)
        if self.decisions is not None:
            self.decisions.decided(r, req, views, decision)
        if decision.outcome != OK:
            r.rejected = decision.outcome
            rejected.append(r)
            return
        replica = self.by_id[decision.replica.id]
        r.replica, r.pool = replica.view.id, replica.view.pool
        r.precision = replica.view.precision
        r.routed_cached = replica.view.cached_tokens(req)
        replica.view.prefix.insert(r.block_hashes)  # the router's guess, from what it sent
        schedule(replica, replica.enqueue(r, r.arrival_s))
