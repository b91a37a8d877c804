"""The ingress's prompt count (serve/tokens.py) and per-request policy (serve/
policy_header.py) without Ray: a fake pool `tokenize` call in front of the real code."""

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.engines.base import EngineFault, RequestError
from orchestrator.engines.simulated import SimulatedEngine
from orchestrator.router import policies
from orchestrator.router.context import ReplicaView
from orchestrator.router.prefix import hash_blocks
from orchestrator.serve.metrics import make_metrics
from orchestrator.serve.openai_api import ApiError
from orchestrator.serve.policy_header import PolicyChoice
from orchestrator.serve.tokens import PromptCounter


def view(rid, pool, running=0):
    return ReplicaView(id=rid, pool=pool, precision="f16", quality_rank=1, speeds=None,
                       max_batch=1, kv_capacity_tokens=1, max_context=1,
                       chunked_prefill=False, capacity_tokens_per_s=1.0, running=running)


class FakePools:
    """A pool's tokenize: ids after a delay, or an exception."""

    def __init__(self, answer=None, delay=0.0):
        self.answer, self.delay, self.asked = answer, delay, []

    def __call__(self, dep, req):
        self.asked.append((dep, req))
        return self._answer(req)

    async def _answer(self, req):
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer if self.answer is not None else list(range(len(req.prompt or "")))


def counter(pools, **kw):
    return PromptCounter(pools, make_metrics(CollectorRegistry()), block_tokens=4, **kw)


VIEWS = [view("b1", "pool-b"), view("a2", "pool-a", running=3), view("a1", "pool-a", 1)]


def test_counts_with_the_replicas_ids_and_hashes_their_blocks():
    pools = FakePools(answer=list(range(10)))
    c = asyncio.run(counter(pools).count(VIEWS, "a" * 100, None))
    assert (c.tokens, c.exact) == (10, True)
    assert c.block_hashes == hash_blocks(list(range(10)), 4) and len(c.block_hashes) == 2
    # always the first pool by name, its least busy replica: equal prompts hash alike
    ((dep, req),) = pools.asked
    assert (dep, req.target_replica, req.prompt) == ("pool-a", "a1", "a" * 100)


def test_pools_on_one_backend_share_the_tokenizing_and_others_never_do():
    same = FakePools(answer=[1])
    asyncio.run(counter(same, tokenizer_of={"pool-a": "x", "pool-b": "x"}).count(
        VIEWS, "p", None))
    assert same.asked[0][1].target_replica == "b1"  # idle, and tokenizes as pool-a does
    other = FakePools(answer=[1])
    asyncio.run(counter(other, tokenizer_of={"pool-a": "x", "pool-b": "y"}).count(
        VIEWS, "p", None))
    assert other.asked[0][1].target_replica == "a1"


def test_a_chat_is_sent_as_messages_for_the_replica_to_render():
    pools = FakePools(answer=[1, 2, 3])
    msgs = [{"role": "user", "content": "hi"}]
    asyncio.run(counter(pools).count(VIEWS, None, msgs))
    assert pools.asked[0][1].messages == msgs and pools.asked[0][1].prompt is None


@pytest.mark.parametrize("pools,views,reason", [
    (FakePools(delay=5), VIEWS, "timeout"),
    (FakePools(answer=EngineFault("no tokenizer")), VIEWS, "error"),
    (FakePools(), [], "no_replica"),
])
def test_falls_back_to_characters_counts_and_logs_once(pools, views, reason, caplog):
    c = counter(pools, timeout_s=0.05)
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        got = [asyncio.run(c.count(views, "x" * 40, None)) for _ in range(2)]
    assert all((g.tokens, g.block_hashes, g.exact) == (10, (), False) for g in got)
    assert c.m["tokenize_fallbacks"].labels(reason)._value.get() == 2
    assert sum(reason in r.message for r in caplog.records) == 1
    assert pools.asked == [] if reason == "no_replica" else len(pools.asked) == 2


def test_a_refusing_chat_template_is_the_requests_400_at_once():
    pools = FakePools(answer=RequestError("roles must alternate", "messages",
                                          "invalid_messages"))
    with pytest.raises(ApiError) as e:
        asyncio.run(counter(pools).count(VIEWS, None, [{"role": "user", "content": "x"}]))
    assert e.value.status == 400 and e.value.body["error"]["param"] == "messages"


def test_the_simulated_engine_tokenizes_as_it_counts_and_keeps_prefixes():
    eng = SimulatedEngine(speeds=None)
    a = eng.tokenize("the same long prefix, then one ending")
    b = eng.tokenize("the same long prefix, then another")
    assert len(a) == eng.count_tokens("the same long prefix, then one ending")
    assert a[:6] == b[:6] and a != b


def test_policy_header_choice():
    choice = PolicyChoice(None, per_request=True)
    assert choice.of(None) is choice.deployment_policy
    assert choice.deployment_policy.name == policies.DEFAULT_POLICY
    p2c = choice.of("power_of_two")
    assert p2c.name == "power_of_two" and choice.of(" Power_Of_Two ") is p2c  # one per name
    with pytest.raises(ApiError) as e:
        choice.of("fastest")
    assert e.value.status == 400 and e.value.body["error"]["code"] == "unknown_policy"
    assert all(n in e.value.body["error"]["message"] for n in policies.POLICIES)


def test_policy_header_is_a_400_while_the_setting_is_off():
    choice = PolicyChoice("round_robin", per_request=False)
    assert choice.of(None).name == "round_robin"
    with pytest.raises(ApiError) as e:
        choice.of("slo_aware")
    assert e.value.status == 400 and "serving.policy_header" in e.value.body["error"]["message"]
