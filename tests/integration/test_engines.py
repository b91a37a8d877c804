"""The llama.cpp engine on the real demo model, each scenario in its own process
(tests/isolated.py: a native crash fails the test with its signal, never pytest), and the
simulated engine's timing."""

import asyncio
import threading
import time

import pytest

from orchestrator.backends import serving_backend
from orchestrator.engines.base import GenerateRequest
from orchestrator.errors import UnknownNameError
from tests.isolated import IsolatedError, run_isolated


# -- scenarios, run in the engine's own process ---------------------------------------------

def _engine(model_path):
    from orchestrator.models.catalog import get_model

    eng = serving_backend("llamacpp").make_engine(
        model_path=model_path, n_ctx=1024, n_threads=1,
        chat_template=get_model("gemma-3-270m").chat_template)
    asyncio.run(eng.start())
    return eng


def _collect(engine, req):
    async def go():
        return [c async for c in engine.generate(req)]

    return asyncio.run(go())


def stream_and_counts(model_path):
    eng = _engine(model_path)
    prompt = "The capital of France is"
    a = _collect(eng, GenerateRequest("a", prompt=prompt, max_tokens=6, temperature=0, seed=1))
    b = _collect(eng, GenerateRequest("b", prompt=prompt, max_tokens=6, temperature=0, seed=1))
    # seeds past llama.cpp's 32 bits (the API takes signed 64-bit ones) and negative ones
    big = _collect(eng, GenerateRequest("c", prompt=prompt, max_tokens=2, seed=2**63 - 1))
    neg = _collect(eng, GenerateRequest("d", prompt=prompt, max_tokens=2, seed=-7))
    return {"finish": a[-1].finish_reason, "n": a[-1].completion_tokens,
            "prompt_tokens": a[-1].prompt_tokens, "counted": eng.count_tokens(prompt),
            "same": "".join(c.text for c in a) == "".join(c.text for c in b),
            "seeded": [big[-1].completion_tokens, neg[-1].completion_tokens]}


def stop_sequence(model_path):
    eng = _engine(model_path)
    return "".join(c.text for c in _collect(eng, GenerateRequest(
        "c", prompt="1, 2, 3, 4, 5,", max_tokens=40, temperature=0, stop=(" 8",))))


def chat_template(model_path):
    from orchestrator.engines.base import RequestError

    eng = _engine(model_path)
    prompt = eng.render_chat([{"role": "user", "content": "Hi"}])
    chunks = _collect(eng, GenerateRequest("d", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=3, temperature=0))
    try:
        eng.render_chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        refused = None
    except RequestError as e:
        refused = (e.param, e.message)
    return prompt, chunks[-1].finish_reason, refused


def abandoned_streams_free_the_engine(model_path):
    eng = _engine(model_path)

    async def go():
        # one running, one queued behind it: both clients leave
        running = eng.generate(GenerateRequest("e", prompt="Once upon a time", max_tokens=200))
        queued = eng.generate(GenerateRequest("f", prompt="Once upon a time", max_tokens=200))
        waiter = asyncio.ensure_future(queued.__anext__())
        await running.__anext__()
        await asyncio.sleep(0.05)
        waiting_before = eng.stats().waiting
        waiter.cancel()
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        await queued.aclose()
        waiting_after = eng.stats().waiting  # at once, not when the worker gets to it
        await running.aclose()
        for _ in range(200):  # the worker notices at its next token
            if eng.stats().running == 0:
                break
            await asyncio.sleep(0.05)
        after = [c async for c in eng.generate(GenerateRequest("g", prompt="Hi", max_tokens=2))]
        return waiting_before, waiting_after, eng.stats().running, after[-1].completion_tokens

    return asyncio.run(go())


def wedged_worker_fails_health(model_path):
    from orchestrator.engines.base import EngineFault

    eng = _engine(model_path)
    eng.health(stall_s=0.2)  # idle: healthy however long since the last token
    release = threading.Event()
    eng.pool.submit(release.wait)  # the engine's one thread, stuck

    async def go():
        gen = eng.generate(GenerateRequest("h", prompt="Hi", max_tokens=2))
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.5)
        try:
            eng.health(stall_s=0.2)
            verdict = "healthy"
        except EngineFault as e:
            verdict = str(e)
        release.set()
        await first
        async for _ in gen:
            pass
        eng.health(stall_s=0.2)  # moving again
        return verdict

    return asyncio.run(go())


def quantized_cache_serves(model_path, cache_type):
    """The engine with the planner's quantized KV cache (type_k/type_v, flash attention)."""
    from orchestrator.models.catalog import get_model

    eng = serving_backend("llamacpp").make_engine(
        model_path=model_path, n_ctx=1024, n_threads=1, cache_type=cache_type,
        chat_template=get_model("gemma-3-270m").chat_template)
    asyncio.run(eng.start())
    ctx = eng.llm.context_params
    out = _collect(eng, GenerateRequest("q", prompt="The capital of France is", max_tokens=8,
                                        temperature=0))
    return {"type_k": ctx.type_k, "type_v": ctx.type_v, "n": out[-1].completion_tokens,
            "text": "".join(c.text for c in out)}


def corrupt_model_fails_to_load(path):
    eng = serving_backend("llamacpp").make_engine(model_path=path, n_ctx=256)
    asyncio.run(eng.start())


# -- tests --------------------------------------------------------------------------------

def test_stream_respects_max_tokens_and_counts(demo_model_path):
    r = run_isolated(stream_and_counts, demo_model_path)
    assert r["finish"] == "length" and r["n"] == 6
    assert r["prompt_tokens"] == r["counted"] and r["same"]
    assert r["seeded"] == [2, 2]


@pytest.mark.parametrize("cache_type,ggml", [("q8_0", 8), ("q4_0", 2)])
def test_a_quantized_kv_cache_reaches_llama_cpp_and_serves(demo_model_path, cache_type, ggml):
    r = run_isolated(quantized_cache_serves, demo_model_path, cache_type)
    assert (r["type_k"], r["type_v"]) == (ggml, ggml)
    assert r["n"] == 8 and r["text"].strip()


def test_stop_sequence_ends_the_stream(demo_model_path):
    assert " 8" not in run_isolated(stop_sequence, demo_model_path)


def test_chat_uses_the_template_and_its_refusals_are_request_errors(demo_model_path):
    prompt, finish, refused = run_isolated(chat_template, demo_model_path)
    assert prompt.startswith("<start_of_turn>user\nHi<end_of_turn>")
    assert prompt.endswith("<start_of_turn>model\n")
    assert finish in ("length", "stop")
    assert refused[0] == "messages" and "must alternate" in refused[1]


def test_abandoned_streams_free_the_engine_at_once(demo_model_path):
    before, after, running, served = run_isolated(abandoned_streams_free_the_engine,
                                                  demo_model_path)
    assert before == 1 and after == 0 and running == 0 and served == 2


def test_a_wedged_worker_fails_the_health_check(demo_model_path):
    verdict = run_isolated(wedged_worker_fails_health, demo_model_path)
    assert "no progress" in verdict


def test_a_corrupt_model_fails_start_with_an_error_not_a_crash(tmp_path):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 4096)
    with pytest.raises(IsolatedError):
        run_isolated(corrupt_model_fails_to_load, str(bad))


def test_simulated_engine_follows_the_timing_model():
    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from tests.conftest import CLUSTERS

    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    speeds = plan.node_types[1].choice.speed_model.speeds()
    eng = serving_backend("simulated").make_engine(speeds=speeds, time_scale=0.1)
    asyncio.run(eng.start())
    t0 = time.perf_counter()
    chunks = _collect(eng, GenerateRequest("s", prompt="x" * 4000, max_tokens=11))
    elapsed = time.perf_counter() - t0
    expect = 0.1 * (1000 / speeds.prefill_tokens_per_s() + 10 * speeds.decode_step_s(1, 1005))
    assert len(chunks) == 11 and chunks[-1].finish_reason == "length"
    assert expect * 0.9 < elapsed < expect * 2 + 0.2


def test_unknown_engine():
    with pytest.raises(UnknownNameError,
                       match="llamacpp, llamaserver, simulated, trtllm, upstream, vllm"):
        serving_backend("exllama").make_engine()


def test_vllm_missing_extra_named_at_start():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from orchestrator.errors import MissingExtraError

    eng = serving_backend("vllm").make_engine(model="/nonexistent")
    with pytest.raises(MissingExtraError, match=r"orchestrator\[vllm\]"):
        asyncio.run(eng.start())


def request_fields(model_path):
    """Every request feature sent to the real engine (tests/engine_fields.py)."""
    from tests.engine_fields import exercise

    return asyncio.run(exercise(_engine(model_path)))


def test_the_request_features_it_honours_take_effect(demo_model_path):
    from tests.engine_fields import check

    seen = run_isolated(request_fields, demo_model_path)
    check(seen, set(serving_backend("llamacpp").honours()))
    assert seen["logprobs"]["items"] == []  # not honoured: the ingress never sends it here


def bad_constraints(model_path):
    """What the request sends that llama.cpp cannot take: each a RequestError naming it,
    and the engine still serves (a NULL grammar sampler would crash it)."""
    from llama_cpp import LlamaGrammar

    from orchestrator.engines.base import RequestError

    eng = _engine(model_path)
    out = []
    for call in (lambda: eng.check_grammar(LlamaGrammar.from_string("root ::= (")),
                 lambda: _collect(eng, GenerateRequest("v", prompt="Hi", max_tokens=2,
                                                       logit_bias=((10**7, 1.0),)))):
        try:
            call()
            out.append(None)
        except RequestError as e:
            out.append(e.param)
    out.append(_collect(eng, GenerateRequest("w", prompt="Hi", max_tokens=2))[-1]
               .completion_tokens)
    return out


def test_a_grammar_or_token_llama_cpp_refuses_is_the_requests_fault(demo_model_path):
    assert run_isolated(bad_constraints, demo_model_path) == [
        "response_format", "logit_bias", 2]


# A chat template that renders tools, as Llama 3.1's does (a JSON list in the system turn);
# the demo's Gemma 3 270M template takes none.
TOOLS_TEMPLATE = (
    "{% if tools %}<start_of_turn>system\nYou may call one of these functions, answering "
    "{\"name\": ..., \"arguments\": ...}:\n{{ tools | tojson }}<end_of_turn>\n{% endif %}"
    "{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n"
    "{% endfor %}<start_of_turn>model\n")


def forced_tool_call(model_path):
    """A required tool call on the real engine: the template shows the tools, the answer
    is held to the call's schema and reads back as a call."""
    import json

    from orchestrator.engines.tools import forced_schema, parse_call
    from tests.engine_fields import WEATHER

    eng = serving_backend("llamacpp").make_engine(model_path=model_path, n_ctx=1024,
                                                  n_threads=1, chat_template=TOOLS_TEMPLATE)
    asyncio.run(eng.start())
    msgs = [{"role": "user", "content": "What is the weather in Oslo?"}]
    prompt = eng.render_chat(msgs, [WEATHER])
    out = _collect(eng, GenerateRequest(
        "t", prompt=prompt, rendered_chat=True, max_tokens=60, temperature=0,
        json_schema=json.dumps(forced_schema([WEATHER], "required"))))
    return prompt, parse_call("".join(c.text for c in out), [WEATHER])


def test_a_required_tool_call_comes_back_as_a_call(demo_model_path):
    import json

    prompt, call = run_isolated(forced_tool_call, demo_model_path)
    assert '"name": "get_weather"' in prompt  # the model saw the tool
    assert call is not None and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
