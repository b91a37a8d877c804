"""The llama.cpp engine on the real demo model, and the simulated engine's timing."""

import asyncio
import time

import pytest

from orchestrator.engines import registry
from orchestrator.engines.base import GenerateRequest
from orchestrator.errors import UnknownNameError


@pytest.fixture(scope="module")
def engine(demo_model_path):
    from orchestrator.models.catalog import get_model

    eng = registry.make("llamacpp", model_path=demo_model_path, n_ctx=1024,
                        chat_template=get_model("gemma-3-270m").chat_template)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.stop())


def collect(engine, req):
    async def go():
        return [c async for c in engine.generate(req)]

    return asyncio.run(go())


def test_stream_respects_max_tokens_and_counts(engine):
    chunks = collect(engine, GenerateRequest("a", prompt="The capital of France is",
                                             max_tokens=6, temperature=0, seed=1))
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].completion_tokens == 6
    assert chunks[-1].prompt_tokens == engine.count_tokens("The capital of France is")
    again = collect(engine, GenerateRequest("b", prompt="The capital of France is",
                                            max_tokens=6, temperature=0, seed=1))
    assert "".join(c.text for c in again) == "".join(c.text for c in chunks)


def test_stop_sequence_ends_the_stream(engine):
    text = "".join(c.text for c in collect(engine, GenerateRequest(
        "c", prompt="1, 2, 3, 4, 5,", max_tokens=40, temperature=0, stop=(" 8",))))
    assert " 8" not in text


def test_chat_uses_the_template(engine):
    prompt = engine.render_chat([{"role": "user", "content": "Hi"}])
    assert prompt.startswith("<start_of_turn>user\nHi<end_of_turn>")
    assert prompt.endswith("<start_of_turn>model\n")
    chunks = collect(engine, GenerateRequest("d", messages=[{"role": "user", "content": "Hi"}],
                                             max_tokens=3, temperature=0))
    assert chunks[-1].finish_reason in ("length", "stop")


def test_abandoned_stream_stops_generating(engine):
    async def go():
        gen = engine.generate(GenerateRequest("e", prompt="Once upon a time", max_tokens=200))
        async for _ in gen:
            break
        await gen.aclose()
        # the worker notices at the next token; then the engine is free again
        for _ in range(200):
            if engine.stats().running == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert asyncio.run(go())


def test_simulated_engine_follows_the_timing_model():
    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from tests.conftest import CLUSTERS

    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    speeds = plan.node_types[1].choice.speed_model.speeds()
    eng = registry.make("simulated", speeds=speeds, time_scale=0.1)
    asyncio.run(eng.start())
    t0 = time.perf_counter()
    chunks = collect(eng, GenerateRequest("s", prompt="x" * 4000, max_tokens=11))
    elapsed = time.perf_counter() - t0
    expect = 0.1 * (1000 / speeds.prefill_tokens_per_s() + 10 * speeds.decode_step_s(1, 1005))
    assert len(chunks) == 11 and chunks[-1].finish_reason == "length"
    assert expect * 0.9 < elapsed < expect * 2 + 0.2


def test_unknown_engine():
    with pytest.raises(UnknownNameError, match="llamacpp, simulated, trtllm, vllm"):
        registry.make("exllama")


def test_vllm_missing_extra_named_at_start():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from orchestrator.build.builders import MissingExtraError

    eng = registry.make("vllm", model="/nonexistent")
    with pytest.raises(MissingExtraError, match=r"orchestrator\[vllm\]"):
        asyncio.run(eng.start())
