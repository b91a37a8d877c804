"""The dispatcher without Ray: fake pool streams (the interface of Serve's streaming
response: __anext__ and cancel) in front of the real routing policy and ledger. Every path
releases the ledger entry and cancels what it leaves behind; request errors are 400s that
hold nothing against the replica; engine faults retry; timeouts end in 504."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.config import load_cluster_spec
from orchestrator.engines.base import Chunk, EngineFault, context_too_long
from orchestrator.planner.select import plan_cluster
from orchestrator.router import policies
from orchestrator.router.context import RouteRequest
from orchestrator.serve.contract import PoolFacts, PoolRequest, deployment_name
from orchestrator.serve.dispatch import Dispatcher, StreamTimeout
from orchestrator.serve.metrics import make_metrics
from orchestrator.serve.openai_api import ApiError
from tests.conftest import CLUSTERS

PLAN = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
POOLS = {deployment_name(n.node_type): PoolFacts(pool=n.node_type, precision=n.choice.precision,
                                                 node_plan=n, max_context=8192, max_waiting=4)
         for n in PLAN.pools()}
F16 = next(d for d, f in POOLS.items() if f.precision == "f16")
INT4 = next(d for d in POOLS if d != F16)


class FakeStream:
    """What a replica sends: chunks after delays, or an exception; records cancel()."""

    def __init__(self, script):
        self.script = list(script)  # (delay_s, Chunk | Exception)
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.script:
            raise StopAsyncIteration
        delay, item = self.script.pop(0)
        await asyncio.sleep(delay)
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self):
        self.cancelled = True


def chunk(i, finish=None):
    return Chunk("t", i, 5, finish)


class Harness:
    def __init__(self, replicas=None, scripts=None, **kw):
        self.replicas = replicas if replicas is not None else {F16: ["a1"], INT4: ["b1", "b2"]}
        self.scripts = scripts or {}  # replica id -> list of scripts, one per request
        self.sent: list[tuple[str, FakeStream]] = []
        self.d = Dispatcher(pools=POOLS, policy=policies.make("slo_aware"), send=self.send,
                            listing=self.listing, metrics=make_metrics(
                                CollectorRegistry(), {d: f.precision for d, f in POOLS.items()}),
                            **kw)

    def listing(self):
        return {dep: {rid: {"stats": {}} for rid in ids} for dep, ids in self.replicas.items()}

    def send(self, dep, req: PoolRequest):
        queue = self.scripts.get(req.target_replica) or [[(0, chunk(1)), (0, chunk(2, "length"))]]
        stream = FakeStream(queue.pop(0) if len(queue) > 1 else queue[0])
        self.sent.append((req.target_replica, stream))
        return stream


def rr(pin=None, prompt=10, max_tokens=2):
    return RouteRequest(prompt, max_tokens, pinned_precision=pin)


def req(rid="r1"):
    return PoolRequest(request_id=rid, max_tokens=2, prompt="hi")


async def drain(d, s):
    return [c async for c in d.chunks(s)]


def test_answer_releases_the_ledger():
    h = Harness()

    async def go():
        s = await h.d.start(rr(), req())
        assert h.d.ledger.flights  # in flight until the stream ends
        return await drain(h.d, s)

    assert [c.completion_tokens for c in asyncio.run(go())] == [1, 2]
    assert h.d.ledger.flights == {} and not h.sent[0][1].cancelled


def test_client_gone_before_first_token_releases_and_cancels():
    h = Harness(scripts={rid: [[(5, chunk(1))]] for rid in ("a1", "b1", "b2")})

    async def go():
        task = asyncio.ensure_future(h.d.start(rr(), req()))
        await asyncio.sleep(0.05)
        assert len(h.d.ledger.flights) == 1
        task.cancel()  # what Serve does when the HTTP client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert h.d.ledger.flights == {}
    assert [s.cancelled for _, s in h.sent] == [True]
    assert h.d.suspect == {}  # a client leaving is not the replica's fault


def test_client_gone_mid_stream_releases_and_cancels():
    h = Harness(scripts={rid: [[(0, chunk(1)), (0, chunk(2)), (5, chunk(3))]]
                         for rid in ("a1", "b1", "b2")})

    async def go():
        s = await h.d.start(rr(), req())
        gen = h.d.chunks(s)
        await gen.__anext__()
        await gen.aclose()  # Starlette closes the body iterator when the client leaves

    asyncio.run(go())
    assert h.d.ledger.flights == {} and h.sent[0][1].cancelled


def test_request_error_is_a_400_not_retried_not_suspect():
    bad = context_too_long(9000, 10, 8192)
    h = Harness(scripts={rid: [[(0, bad)]] for rid in ("a1", "b1", "b2")})
    with pytest.raises(ApiError) as e:
        asyncio.run(h.d.start(rr(), req()))
    assert e.value.status == 400
    assert e.value.body["error"]["param"] == "max_tokens"
    assert e.value.body["error"]["code"] == "context_length_exceeded"
    assert len(h.sent) == 1 and h.d.suspect == {} and h.d.ledger.flights == {}


def test_request_error_wrapped_by_ray_is_still_a_400():
    class Wrapped(Exception):  # how Ray delivers a replica's exception: the original in .cause
        def __init__(self, cause):
            self.cause = cause

    h = Harness(scripts={rid: [[(0, Wrapped(context_too_long(1, 2, 3)))]]
                         for rid in ("a1", "b1", "b2")})
    with pytest.raises(ApiError) as e:
        asyncio.run(h.d.start(rr(), req()))
    assert e.value.status == 400 and len(h.sent) == 1


def test_engine_fault_retries_elsewhere_and_hides_its_text():
    secret = EngineFault("/opt/models/x.gguf: secret path in a traceback")
    h = Harness(replicas={INT4: ["b1", "b2"], F16: []},
                scripts={"b1": [[(0, secret)]], "b2": [[(0, secret)]]})
    with pytest.raises(ApiError) as e:
        asyncio.run(h.d.start(rr("awq_int4"), req("cmpl-xyz")))
    assert e.value.status == 503 and "cmpl-xyz" in e.value.body["error"]["message"]
    assert "secret" not in str(e.value.body)
    assert {r for r, _ in h.sent} == {"b1", "b2"} and set(h.d.suspect) == {"b1", "b2"}
    assert h.d.ledger.flights == {}


def test_engine_fault_then_success_on_another_replica():
    h = Harness(replicas={INT4: ["b1", "b2"], F16: []},
                scripts={"b1": [[(0, EngineFault("x"))]], "b2": [[(0, chunk(1, "stop"))]]})

    async def go():
        s = await h.d.start(rr("awq_int4"), req())
        return s.replica, await drain(h.d, s)

    replica, chunks = asyncio.run(go())
    assert replica == "b2" and len(chunks) == 1 and list(h.d.suspect) == ["b1"]


def test_first_token_timeout_is_a_504_and_cancels():
    h = Harness(scripts={rid: [[(5, chunk(1))]] for rid in ("a1", "b1", "b2")},
                first_token_timeout_s=0.05)
    with pytest.raises(ApiError) as e:
        asyncio.run(h.d.start(rr(), req()))
    assert e.value.status == 504 and e.value.body["error"]["code"] == "timeout"
    assert h.d.ledger.flights == {} and h.sent[0][1].cancelled and len(h.sent) == 1


def test_inter_token_timeout_ends_the_stream_and_cancels():
    h = Harness(scripts={rid: [[(0, chunk(1)), (5, chunk(2))]] for rid in ("a1", "b1", "b2")},
                inter_token_timeout_s=0.05)

    async def go():
        s = await h.d.start(rr(), req())
        return await drain(h.d, s)

    with pytest.raises(StreamTimeout):
        asyncio.run(go())
    assert h.d.ledger.flights == {} and h.sent[0][1].cancelled


def test_pinned_request_to_a_pool_at_zero_is_demand_for_it():
    h = Harness(replicas={F16: [], INT4: ["b1"]})
    with pytest.raises(ApiError) as e:
        asyncio.run(h.d.start(rr("f16"), req()))
    assert e.value.status == 503 and e.value.body["error"]["code"] == "pool_unavailable"
    taken = h.d.take_refused()
    assert taken[f"refused:{F16}"] >= 1 and taken[f"refused_pinned:{F16}"] >= 1
    assert h.d.take_refused()[f"refused:{F16}"] == 0  # reset once read


def test_unpinned_request_the_empty_pool_would_take_is_demand_for_it():
    # F16 is the best pool for an unpinned request at no load: served meanwhile by the 4-bit
    # pool, it still counts for F16, so the autoscaler brings F16 back from zero
    h = Harness(replicas={F16: [], INT4: ["b1"]})

    async def go():
        s = await h.d.start(rr(), req())
        return s.dep, await drain(h.d, s)

    dep, _ = asyncio.run(go())
    assert dep == INT4
    assert h.d.take_refused()[f"refused:{F16}"] == 1


def test_no_demand_counted_while_every_pool_has_replicas():
    h = Harness()

    async def go():
        await drain(h.d, await h.d.start(rr(), req()))

    asyncio.run(go())
    assert not any(h.d.take_refused().values())


def test_a_pool_whose_every_replica_is_suspect_still_serves_its_pinned_requests():
    """Suspects are passed over within their own pool only: with both 4-bit replicas
    suspect and the F16 one healthy, a request pinned to 4-bit still goes to a 4-bit
    replica instead of a 503."""
    h = Harness()
    h.d.pass_over("b1")
    h.d.pass_over("b2")

    async def go():
        s = await h.d.start(rr("awq_int4"), req())
        return s.replica, await drain(h.d, s)

    replica, chunks = asyncio.run(go())
    assert replica in ("b1", "b2") and chunks[-1].finish_reason == "length"
    # an unpinned request still prefers the healthy pool's replica
    assert asyncio.run(h.d.start(rr(), req("r2"))).replica == "a1"


def test_finished_requests_feed_the_predictor_and_cut_ones_do_not():
    # every answer is 3 tokens of a 10-token prompt; after enough of them the next
    # request is accounted at 3, not at its max_tokens of 200
    h = Harness(scripts={rid: [[(0, chunk(1)), (0, chunk(2)), (0, chunk(3, "stop"))]]
                         for rid in ("a1", "b1", "b2")})

    async def go():
        for i in range(20):
            await drain(h.d, await h.d.start(rr(max_tokens=200), req(f"r{i}")))
        s = await h.d.start(rr(max_tokens=200), req("next"))
        flight = h.d.ledger.flights["next"]
        await drain(h.d, s)
        return flight

    assert asyncio.run(go()).expected_output == 3
    assert h.d.predictor.predict(10, 200) == 3


def test_a_stream_the_client_left_is_not_observed():
    h = Harness(scripts={rid: [[(0, chunk(1)), (0, chunk(2)), (5, chunk(3))]]
                         for rid in ("a1", "b1", "b2")})

    async def go():
        gen = h.d.chunks(await h.d.start(rr(), req()))
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(go())
    assert not h.d.predictor.recent


def test_the_ledger_holds_the_prediction_and_the_blocks_not_max_tokens():
    h = Harness(scripts={rid: [[(5, chunk(1))]] for rid in ("a1", "b1", "b2")})

    async def go():
        task = asyncio.ensure_future(h.d.start(
            RouteRequest(40, 500, expected_output=7, block_hashes=(1, 2)), req()))
        await asyncio.sleep(0.05)
        (flight,) = h.d.ledger.flights.values()
        view = next(v for v in h.d.ledger.views() if v.id == flight.replica)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return flight, view

    flight, view = asyncio.run(go())
    assert flight.expected_output == 7 and view.waiting_output_tokens == 7
    assert view.kv_used_tokens == 47 and view.prefix.match((1, 2)) == 2


def test_a_request_may_route_with_another_policy():
    class Always:
        """A policy that picks the last replica offered."""

        def choose(self, req, replicas):
            return replicas[-1]

    h = Harness()

    async def go():
        s = await h.d.start(rr(), req(), policy=Always())
        await drain(h.d, s)
        return s.replica

    assert asyncio.run(go()) == "b2"  # slo_aware would keep an idle cluster's request on F16


def test_what_routing_counted_is_metered_beside_the_engines_count():
    h = Harness()

    async def go():
        await drain(h.d, await h.d.start(rr(prompt=5), req()))

    asyncio.run(go())
    dep = next(d for d, ids in h.replicas.items() if h.sent[0][0] in ids)
    assert h.d.m["routed_prompt_tokens"].labels(dep)._value.get() == 5
    assert h.d.m["prompt_tokens"].labels(dep)._value.get() == 5  # chunk()'s prompt count


def test_routing_decisions_and_latencies_are_metered_per_pool_and_precision():
    # a100 (F16) answers its first token after 0.2 s, then a token every 0.01 s
    slow_first = [(0.2, chunk(1)), (0.01, chunk(2)), (0.01, chunk(3, "length"))]
    h = Harness(scripts={"a1": [slow_first]})

    async def go():
        await drain(h.d, await h.d.start(rr(pin="f16", max_tokens=3), req()))
        await drain(h.d, await h.d.start(rr(pin="awq_int4"), req("r2")))

    asyncio.run(go())
    m = h.d.m
    assert m["routes"].labels(F16, "pinned")._value.get() == 1
    assert m["routes"].labels(INT4, "pinned")._value.get() == 1
    # every series says the deployment's precision beside it
    assert m["routes"].metric.labels(F16, "f16", "pinned")._value.get() == 1
    tpot = m["tpot"].labels(F16)._sum.get()
    assert 0.005 < tpot < 0.1  # the two tokens after the first, not the first's 0.2 s wait
    assert m["e2e"].labels(F16)._sum.get() >= 0.2
    assert m["requests"].labels(F16, "ok")._value.get() == 1
