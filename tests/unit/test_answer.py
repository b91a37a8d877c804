"""Answers of several choices (n, a list of prompts), echo, logprobs and tool calls,
collected or streamed by the ingress over fake pool streams (tests/unit/test_dispatch.py's
harness): every choice has its index, usage counts each prompt once, and a choice that
fails mid-stream ends the stream with an error event and cancels the others."""

import asyncio
import json

from orchestrator.engines.base import Chunk, EngineFault, TokenLogprob
from orchestrator.serve import answer
from orchestrator.serve.contract import PoolRequest
from tests.unit.test_dispatch import Harness, rr

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def jobs(n=2, prompts=("p",), logprobs=None, echo=False):
    out = []
    for i, p in enumerate(prompts):
        for j in range(n):
            k = i * n + j
            out.append(answer.Job(k, i, rr(), PoolRequest(f"r-{k}", 2, prompt=p,
                                                          logprobs=logprobs),
                                  p if echo else ""))
    return out


def run(coro):
    return asyncio.run(coro)


def test_n_and_prompts_collect_every_choice_with_usage_per_prompt():
    h = Harness()
    shape = answer.Shape(False, "cmpl-1", "m")
    whole, dep = run(answer.collect(h.d, jobs(n=2, prompts=("a", "b"), echo=True), None,
                                    shape))
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in whole["choices"]] == ["att", "att", "btt", "btt"]
    # the fake engine counts 5 prompt tokens per request: two prompts, four choices
    assert whole["usage"] == {"prompt_tokens": 10, "completion_tokens": 8,
                              "total_tokens": 18}
    assert h.d.ledger.flights == {}


def _events(gen):
    async def go():
        return [e async for e in gen]
    return go


def parse(events):
    return [json.loads(e[6:]) for e in events if e != "data: [DONE]\n\n"]


def test_a_stream_of_two_choices_opens_and_finishes_each():
    h = Harness()
    shape = answer.Shape(True, "chatcmpl-1", "m", include_usage=True)
    js = jobs(n=2, logprobs=0)

    async def go():
        started = await answer.start(h.d, js, None)
        return [e async for e in answer.stream(h.d, js, started, shape)]

    events = run(go())
    assert events[-1] == "data: [DONE]\n\n"
    data = parse(events)
    for k in (0, 1):
        mine = [d["choices"][0] for d in data if d["choices"] and d["choices"][0]["index"] == k]
        assert mine[0]["delta"]["role"] == "assistant"
        assert "".join(c["delta"].get("content") or "" for c in mine) == "tt"
        assert mine[-1]["finish_reason"] == "length"
    assert data[-1]["usage"]["completion_tokens"] == 4
    assert h.d.ledger.flights == {}


def test_a_choice_failing_mid_stream_ends_with_an_error_and_cancels_the_rest():
    h = Harness(scripts={"a1": [[(0, Chunk("x", 1, 5)), (0, EngineFault("boom"))]],
                         "b1": [[(0, Chunk("y", 1, 5)), (5, Chunk("z", 2, 5, "length"))]],
                         "b2": [[(0, Chunk("y", 1, 5)), (5, Chunk("z", 2, 5, "length"))]]})
    shape = answer.Shape(False, "cmpl-2", "m")
    js = jobs(n=3)

    async def go():
        started = await answer.start(h.d, js, None)
        return [e async for e in answer.stream(h.d, js, started, shape)]

    data = parse(run(go()))
    assert data[-1]["error"]["code"] == "replica_failed"
    assert h.d.ledger.flights == {}
    assert all(s.cancelled for _, s in h.sent if s.script)  # the slow ones were cancelled


def test_logprobs_and_tool_calls_are_collected():
    lp = TokenLogprob('{"', -0.1, (('{"', -0.1),))
    text = '{"name": "f", "arguments": {"x": 1}}'
    h = Harness(scripts={rid: [[(0, Chunk(text, 1, 5, "stop", (lp,)))]]
                         for rid in ("a1", "b1", "b2")})
    shape = answer.Shape(True, "chatcmpl-3", "m", tools=[TOOL])
    whole, _ = run(answer.collect(h.d, jobs(n=1, logprobs=1), None, shape))
    (choice,) = whole["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
    assert choice["logprobs"]["content"][0]["token"] == '{"'


def test_a_choice_refused_before_its_first_token_stops_the_ones_that_started():
    import pytest

    from orchestrator.engines.base import RequestError
    from orchestrator.serve.openai_api import ApiError
    from tests.unit.test_dispatch import F16, INT4

    h = Harness(replicas={F16: ["a1"], INT4: []},
                scripts={"a1": [[(0, Chunk("x", 1, 5)), (5, Chunk("y", 2, 5, "length"))],
                                [(0.05, RequestError("no", "logit_bias"))]]})
    with pytest.raises(ApiError) as e:
        run(answer.start(h.d, jobs(n=2), None))
    assert e.value.status == 400 and e.value.body["error"]["param"] == "logit_bias"
    assert h.d.ledger.flights == {} and all(s.cancelled for _, s in h.sent)


def test_a_client_gone_while_choices_start_stops_the_ones_that_started():
    from tests.unit.test_dispatch import F16, INT4

    h = Harness(replicas={F16: ["a1"], INT4: []},
                scripts={"a1": [[(0, Chunk("x", 1, 5)), (5, Chunk("y", 2, 5, "length"))],
                                [(5, Chunk("x", 1, 5))]]})

    async def go():
        task = asyncio.ensure_future(answer.start(h.d, jobs(n=2), None))
        await asyncio.sleep(0.1)  # the first choice has its first token, the second not
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    run(go())
    assert h.d.ledger.flights == {} and all(s.cancelled for _, s in h.sent)


def test_a_stream_body_never_read_stops_its_choices_when_dropped():
    h = Harness()
    js = jobs(n=2)
    started = run(answer.start(h.d, js, None))
    assert len(h.d.ledger.flights) == 2
    body = answer.Streamed(h.d, js, started, answer.Shape(False, "cmpl-4", "m"))
    del body  # what is left when the client leaves before the body is sent
    assert h.d.ledger.flights == {} and all(s.cancelled for _, s in h.sent)
