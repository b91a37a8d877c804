"""The llama-server engine on the real demo model and a real compiled `llama-server` (built
once per machine into the node's cache, then reused): streaming and counts, stop
sequences, several sequences decoding together in its slots, a client that leaves freeing
its slot, bad input refused as the request's fault, and a server that dies failing the
health check with its signal, never the test process (it runs in its own process)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from orchestrator.backends import serving_backend
from orchestrator.engines.base import EngineFault, GenerateRequest, RequestError


@pytest.fixture(scope="module")
def server_binary():
    from orchestrator.backends import llama_server_bin as binsrc
    from orchestrator.build.store import default_store

    binary, _ = binsrc.server_binary({"isa": "avx2"}, default_store() / ".cache")
    return str(binary)


def _engine(binary, model_path, slots=4):
    from orchestrator.models.catalog import get_model

    return serving_backend("llamaserver").make_engine(
        binary=binary, model_path=model_path, slots=slots, ctx_per_slot=1024, threads=1,
        chat_template=get_model("gemma-3-270m").chat_template)


async def _collect(engine, req):
    return [c async for c in engine.generate(req)]


def test_streams_counts_stops_and_chat(server_binary, demo_model_path):
    async def go():
        eng = _engine(server_binary, demo_model_path)
        await eng.start()
        try:
            prompt = "The capital of France is"
            a = await _collect(eng, GenerateRequest("a", prompt=prompt, max_tokens=6,
                                                    temperature=0))
            b = await _collect(eng, GenerateRequest("b", prompt=prompt, max_tokens=6,
                                                    temperature=0))
            stop = await _collect(eng, GenerateRequest("c", prompt="1, 2, 3, 4, 5,",
                                                       max_tokens=40, temperature=0,
                                                       stop=(" 8",)))
            chat = await _collect(eng, GenerateRequest(
                "d", prompt=eng.render_chat([{"role": "user", "content": "Hi"}]),
                max_tokens=3, temperature=0, rendered_chat=True))
            return a, b, stop, chat, eng.count_tokens(prompt)
        finally:
            await eng.stop()

    a, b, stop, chat, counted = asyncio.run(go())
    assert a[-1].finish_reason == "length" and a[-1].completion_tokens == 6
    assert a[-1].prompt_tokens == counted  # the server's count is ours
    assert "".join(c.text for c in a) == "".join(c.text for c in b)
    text = "".join(c.text for c in stop)
    assert " 8" not in text and " 7" in text and stop[-1].finish_reason == "stop"
    assert chat[-1].finish_reason in ("stop", "length") and chat[-1].completion_tokens <= 3


def test_slots_decode_together_and_a_leaving_client_frees_its_slot(server_binary,
                                                                   demo_model_path):
    async def go():
        eng = _engine(server_binary, demo_model_path, slots=4)
        await eng.start()
        try:
            reqs = [GenerateRequest(f"r{i}", prompt=f"Count to ten: {i},", max_tokens=24,
                                    temperature=0) for i in range(6)]
            tasks = [asyncio.ensure_future(_collect(eng, r)) for r in reqs]
            seen_running = 0
            while not all(t.done() for t in tasks):
                st = eng.stats()
                seen_running = max(seen_running, st.running)
                assert st.running <= 4
                await asyncio.sleep(0.05)
            results = [t.result() for t in tasks]
            # a client that leaves after its first token: the slot is free again soon
            gen = eng.generate(GenerateRequest("gone", prompt="Once upon a time",
                                               max_tokens=400))
            await gen.__anext__()
            await gen.aclose()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:
                view = eng.server_view
                if view and view[1] + view[2] == 0 and not eng.live:
                    break
                await asyncio.sleep(0.1)
            freed = time.monotonic() - t0
            return results, seen_running, freed, eng.metrics
        finally:
            await eng.stop()

    results, seen_running, freed, metrics = asyncio.run(go())
    assert all(r[-1].completion_tokens == 24 and r[-1].finish_reason == "length"
               for r in results)
    assert seen_running >= 2  # sequences decoded together, not one at a time
    assert freed < 5, f"the left request still held its slot after {freed:.1f} s"
    assert "requests_processing" in metrics


def test_bad_input_is_the_requests_fault(server_binary, demo_model_path):
    async def go():
        eng = _engine(server_binary, demo_model_path, slots=1)
        await eng.start()
        try:
            with pytest.raises(RequestError):
                await _collect(eng, GenerateRequest("long", prompt="word " * 3000,
                                                    max_tokens=4))
            ok = await _collect(eng, GenerateRequest("after", prompt="Hi", max_tokens=2))
            return ok
        finally:
            await eng.stop()

    ok = asyncio.run(go())
    assert ok[-1].completion_tokens == 2


def test_a_dead_server_fails_health_with_its_signal(server_binary, demo_model_path):
    async def go():
        eng = _engine(server_binary, demo_model_path, slots=1)
        await eng.start()
        pid = eng.proc.pid
        try:
            eng.health(300)
            os.kill(pid, signal.SIGKILL)
            eng.proc.wait(timeout=10)
            with pytest.raises(EngineFault, match="died of signal SIGKILL"):
                eng.health(300)
            with pytest.raises(EngineFault):
                await _collect(eng, GenerateRequest("x", prompt="Hi", max_tokens=2))
        finally:
            await eng.stop()
        return pid

    pid = asyncio.run(go())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stop_kills_the_server_process(server_binary, demo_model_path):
    async def go():
        eng = _engine(server_binary, demo_model_path, slots=1)
        await eng.start()
        pid = eng.proc.pid
        await eng.stop()
        return pid

    pid = asyncio.run(go())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_request_features_it_honours_take_effect(server_binary, demo_model_path):
    from tests.engine_fields import check, exercise

    async def go():
        eng = _engine(server_binary, demo_model_path, slots=1)
        await eng.start()
        try:
            return await exercise(eng)
        finally:
            await eng.stop()
            eng.terminate()

    honours = set(serving_backend("llamaserver").honours())
    assert {"logprobs", "json_schema", "logit_bias", "penalties"} <= honours
    check(asyncio.run(go()), honours)
