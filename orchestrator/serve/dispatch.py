"""Dispatch: from a parsed request to a stream of chunks from one pool replica.

Routes with the project's policy (or the one a request chose) over the ledger's views,
each request's output predicted from the requests that finished before it (one
OutputPredictor, fed as each stream ends); sends the request to the chosen replica, waits
for its first token, retries on another replica when one fails before it, and keeps the
ledger, the suspects and the refusal counts. Ray-free: the ingress hands it `send` (a
pool's streaming call) and `listing` (the replicas each pool's router knows), so tests
drive it with fakes of those two.

What it promises, whatever happens to the client or the engine:
- a request's ledger entry is released once, on every path (answer, error, timeout, the
  client going away: asyncio.CancelledError is no Exception, so `finally` does it);
- a stream that ends early is cancelled on its replica, so the engine stops working on it;
- the request's own fault (engines.base.RequestError) is a 400 naming the field, never
  retried and never held against the replica; an engine fault is retried and the replica
  passed over for SUSPECT_S;
- no exception text reaches a client: it is logged with the request id, which the
  client's message carries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable

from orchestrator.engines.base import Chunk, RequestError
from orchestrator.models.precision import PRECISIONS
from orchestrator.router.context import ReplicaView, RouteRequest, view_from_plan
from orchestrator.router.ledger import Ledger
from orchestrator.router.predict import OutputPredictor
from orchestrator.router.prefix import BLOCK_TOKENS
from orchestrator.router.route import (CONTEXT_TOO_LONG, OK, OVERLOADED,
                                       UNSATISFIABLE_PRECISION, route)
from orchestrator.serve.contract import PoolFacts, PoolRequest
from orchestrator.serve.openai_api import ApiError

log = logging.getLogger("ray.serve")
SUSPECT_S = 10.0  # how long a replica that failed a request is passed over


class StreamTimeout(Exception):
    """The engine sent nothing for the inter-token timeout."""


@dataclass
class Started:
    """A request whose first chunk has come (or whose stream ended at once)."""

    request_id: str
    stream: object  # the rest of the stream: __anext__ and cancel()
    first: Chunk | None
    dep: str
    replica: str
    t0: float
    prompt_tokens: int = 0  # what routing counted (the predictor's bucket)
    first_at: float = 0.0  # when the first chunk came: TPOT's start


def request_error(e: BaseException) -> RequestError | None:
    """The RequestError behind `e`, also when Ray wrapped it on its way from a replica."""
    cause = getattr(e, "cause", None)  # Ray's RayTaskError keeps the original here
    if isinstance(cause, RequestError):
        return cause
    return e if isinstance(e, RequestError) else None


async def _next(stream) -> Chunk | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


class Dispatcher:
    def __init__(self, *, pools: dict[str, PoolFacts], policy, send: Callable, listing: Callable,
                 metrics: dict, retries: int = 2, first_token_timeout_s: float = 600.0,
                 inter_token_timeout_s: float = 120.0, clock=time.monotonic,
                 block_tokens: int = BLOCK_TOKENS):
        self.pools = pools  # deployment -> static facts (pool, precision, node_plan, ...)
        self.policy, self.send, self.listing = policy, send, listing
        self.m, self.retries, self.clock = metrics, retries, clock
        self.first_token_timeout_s = first_token_timeout_s
        self.inter_token_timeout_s = inter_token_timeout_s
        self.ledger = Ledger(clock, block_tokens)
        self.predictor = OutputPredictor()  # fed by every request that finishes
        self.templates: dict[str, ReplicaView] = {}  # replica id -> idle view, built once
        self.suspect: dict[str, float] = {}  # replica id -> until when to pass it over
        self.refused: dict[str, float] = {}  # autoscaling signal, reset when Serve reads it

    # -- replicas -------------------------------------------------------------------------
    def _template(self, dep: str, rid: str) -> ReplicaView:
        facts = self.pools[dep]
        view = view_from_plan(facts.node_plan, rid, max_waiting=facts.max_waiting,
                              max_context=facts.max_context)
        view.pool = dep  # the live pool is its deployment; the plan calls it by node type
        return view

    def views(self) -> list[ReplicaView]:
        listing = self.listing()
        static = {}
        for dep in self.pools:
            for rid, info in listing.get(dep, {}).items():
                static[rid] = self.templates.get(rid) or self._template(dep, rid)
                self.ledger.report(rid, info.get("stats") or {})
        self.templates = static  # replicas that are gone drop out
        self.ledger.sync(static)
        views = self.ledger.views()
        now = self.clock()
        self.suspect = {k: t for k, t in self.suspect.items() if t > now}
        # Suspects are left out of their own pool unless all of it is suspect: a pool whose
        # every replica failed lately is still the only one a pinned request may use.
        out = []
        for dep in self.pools:
            mine = [v for v in views if v.pool == dep]
            out += [v for v in mine if v.id not in self.suspect] or mine
        return out

    def pass_over(self, replica: str) -> None:
        """A replica that just failed a request: no request goes to it for SUSPECT_S (Serve
        may list a replica of a lost node for a while)."""
        self.suspect[replica] = self.clock() + SUSPECT_S

    def live_counts(self) -> dict[str, int]:
        listing = self.listing()
        return {dep: len(listing.get(dep, {})) for dep in self.pools}

    # -- demand that never reached a replica -------------------------------------------
    def _charge(self, dep: str, pinned: bool) -> None:
        self.refused[f"refused:{dep}"] = self.refused.get(f"refused:{dep}", 0.0) + 1
        if pinned:
            key = f"refused_pinned:{dep}"
            self.refused[key] = self.refused.get(key, 0.0) + 1

    def configured(self, rr: RouteRequest) -> list[str]:
        """Pools of the deployment that could take this request when they have replicas."""
        return [dep for dep, f in self.pools.items()
                if rr.accepts(f.precision, PRECISIONS[f.precision].rank, dep)]

    def count_refused(self, rr: RouteRequest) -> None:
        """A refusal charged to the pool that would serve it best (the autoscaler spills it
        onward when that pool is at its maximum)."""
        best = max(self.configured(rr), key=lambda dep: PRECISIONS[
            self.pools[dep].precision].rank, default=None)
        if best is not None:
            self._charge(best, rr.constrained)

    def count_idle_demand(self, rr: RouteRequest, views: list[ReplicaView],
                          policy=None) -> None:
        """A pool at zero replicas is owed the requests it would have taken: route once more
        with an idle replica of each such pool; if the policy picks one, that pool counts
        the request as demand (served meanwhile by the others, or refused). `views` are
        what views() just returned: the pools with no replica are those it listed none of."""
        listed = {v.pool for v in self.templates.values()}
        empty = [dep for dep in self.pools if dep not in listed]
        if not empty:
            return
        phantoms = [self._template(dep, f"phantom:{dep}") for dep in empty]
        d = route(policy or self.policy, rr, views + phantoms)
        if d.outcome == OK and d.replica.id.startswith("phantom:"):
            self._charge(d.replica.pool, rr.constrained)

    def take_refused(self) -> dict[str, float]:
        out = {f"{kind}:{dep}": 0.0 for dep in self.pools
               for kind in ("refused", "refused_pinned")}
        out.update(self.refused)
        self.refused = {}
        return out

    def route_error(self, d, rr: RouteRequest) -> ApiError:
        if d.outcome == UNSATISFIABLE_PRECISION:
            waiting_for = self.configured(rr)
            if waiting_for:  # the precision exists; its pool has no replica right now
                self.m["errors"].labels("-", "no_replica").inc()
                return ApiError(503, f"{', '.join(waiting_for)} has no live replica right now "
                                     "(starting, scaled to zero or recovering); retry shortly",
                                "server_error", None, "pool_unavailable", {"Retry-After": "2"})
            return ApiError(422, d.detail, "invalid_request_error", "model",
                            "precision_unavailable")
        if d.outcome == CONTEXT_TOO_LONG:
            return ApiError(400, d.detail, "invalid_request_error", "max_tokens",
                            "context_length_exceeded")
        if d.outcome == OVERLOADED:
            self.m["errors"].labels("-", "overloaded").inc()
            self.count_refused(rr)
            return ApiError(429, "every eligible pool is full; retry later",
                            "rate_limit_error", None, "overloaded", {"Retry-After": "1"})
        return ApiError(503, d.detail or "no replica is ready yet", "server_error",
                        headers={"Retry-After": "2"})

    # -- the first token ------------------------------------------------------------------
    async def start(self, rr: RouteRequest, req: PoolRequest, retry: bool = False,
                    policy=None) -> Started:
        """Route (with ``policy``, default the deployment's), dispatch and wait for the
        first chunk, retrying on another replica when one fails before producing anything.
        Retries pass full queues: the failure was ours, and a 429 would lose the request.
        The request's output is the predictor's guess unless ``rr`` brings one."""
        rid, policy = req.request_id, policy or self.policy
        if rr.expected_output is None:
            rr = replace(rr, expected_output=self.predictor.predict(rr.prompt_tokens,
                                                                    rr.max_tokens))
        tried: set[str] = set()
        failures = 0
        views = self.views()
        if not retry:
            self.count_idle_demand(rr, views, policy)
        for attempt in range(self.retries + 1):
            if attempt:  # a replica failed: the listing and the ledger have moved on
                views = self.views()
            views = [v for v in views if v.id not in tried]
            if not views and tried:
                break
            d = route(policy, rr, views, bounded=not (retry or tried))
            self.m["routes"].labels(d.replica.pool if d.replica else "-", d.reason).inc()
            if d.outcome != OK:
                raise self.route_error(d, rr)
            target, dep = d.replica, d.replica.pool
            self.ledger.dispatched(rid, target.id, rr.prompt_tokens, rr.output_guess,
                                   rr.block_hashes)
            t0 = self.clock()
            stream = self.send(dep, replace(req, target_replica=target.id))
            try:
                first = await asyncio.wait_for(_next(stream), self.first_token_timeout_s)
            except asyncio.TimeoutError:
                self.abandon(rid, stream)
                self.m["errors"].labels(dep, "first_token_timeout").inc()
                log.warning("%s: no first token from %s in %.0f s", rid, target.id,
                            self.first_token_timeout_s)
                raise ApiError(504, f"no first token within {self.first_token_timeout_s:g} s "
                                    f"(serving.first_token_timeout_s); request {rid}",
                               "server_error", None, "timeout") from None
            except BaseException as e:
                self.abandon(rid, stream)
                bad = request_error(e)
                if bad is not None:
                    self.m["errors"].labels(dep, "bad_request").inc()
                    raise ApiError(400, bad.message, "invalid_request_error", bad.param,
                                   bad.code) from None
                if not isinstance(e, Exception):  # the client went away, or shutdown
                    raise
                log.error("%s failed on %s before its first token: %r", rid, target.id, e)
                self.m["errors"].labels(dep, "replica_failed_before_first_token").inc()
                tried.add(target.id)
                self.pass_over(target.id)
                failures += 1
                continue
            if first is not None:
                self.ledger.token(rid)
            self.m["ttft"].labels(dep).observe(self.clock() - t0)
            return Started(rid, stream, first, dep, target.id, t0, rr.prompt_tokens,
                           self.clock())
        self.m["errors"].labels("-", "no_replica").inc()
        raise ApiError(503, f"no replica could serve request {rid} ({failures} failed); "
                            "retry shortly", "server_error", None, "replica_failed",
                       {"Retry-After": "1"})

    def abandon(self, rid: str, stream) -> None:
        self.ledger.finished(rid)
        try:
            stream.cancel()
        except Exception:  # already finished or gone: nothing left to stop
            pass

    # -- the rest of the stream -------------------------------------------------------------
    async def chunks(self, s: Started) -> AsyncIterator[Chunk]:
        """The first chunk, then the rest, each within the inter-token timeout; keeps the
        ledger and the metrics, and cancels the replica's work if the stream ends early."""
        last, done, status = s.first, s.first is None, "failed_mid_stream"
        # TPOT runs from the first token's arrival: with several choices this stream may be
        # read only once its siblings have their first tokens too
        first_at = s.first_at or self.clock()
        try:
            if s.first is not None:
                yield s.first
            while not done:
                try:
                    c = await asyncio.wait_for(_next(s.stream), self.inter_token_timeout_s)
                except asyncio.TimeoutError:
                    status = "timeout"
                    self.m["errors"].labels(s.dep, "inter_token_timeout").inc()
                    raise StreamTimeout() from None
                if c is None:
                    break
                self.ledger.token(s.request_id)
                last = c
                yield c
            done, status = True, "ok"
        except (GeneratorExit, asyncio.CancelledError):
            status = "client_gone"
            raise
        finally:
            self.ledger.finished(s.request_id)
            if not done:
                try:
                    s.stream.cancel()
                except Exception:
                    pass
            self.m["requests"].labels(s.dep, status if last else "empty").inc()
            if last is not None:
                n = last.completion_tokens
                if status == "ok":  # a stream cut short says nothing of its full length
                    self.predictor.observe(s.prompt_tokens, n)
                self.m["prompt_tokens"].labels(s.dep).inc(last.prompt_tokens)
                # what routing counted, beside the engine's count: they should agree
                self.m["routed_prompt_tokens"].labels(s.dep).inc(s.prompt_tokens)
                self.m["generation_tokens"].labels(s.dep).inc(n)
                if status == "ok":
                    self.m["e2e"].labels(s.dep).observe(self.clock() - s.t0)
                if n > 1:
                    self.m["tpot"].labels(s.dep).observe((self.clock() - first_at) / (n - 1))
