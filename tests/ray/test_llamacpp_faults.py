"""Faults and bad input on the real llama.cpp pools (Gemma 3 270M, F16 and Q4_K_M, two
emulated CPU node types), once on llama-server (the demo's backend) and once on
llama-cpp-python: engines loaded before the endpoint says ready, clients that leave
(200 before their first token, one mid-stream) free everything at once, the request's own
faults are 400s that hold nothing against a replica, a corrupted artifact fails its pool at
start with the reason, and a first-token timeout ends in 504 with the engine freed.

The second application ("/x") holds the broken and the impatient pools; it runs beside the
demo on the same emulated nodes, which carry two GPU-group units each for that."""

import asyncio
import json
import shutil

import pytest

from orchestrator.bench.overload import disconnect_storm
from orchestrator.config import ServingSpec
from orchestrator.serve import lifecycle
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.ray.serve_util import (build_demo, deploy, free_port, get, idle, post, settled,
                                  wait_for)

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"CPU": 2, "gpu_group:cpu-quality": 2},
         "cpu-throughput": {"CPU": 2, "gpu_group:cpu-throughput": 2}}
MODEL = "gemma-3-270m"
CONTEXT = 1024


@pytest.fixture(scope="module", params=["llamaserver", "llamacpp"])
def stack(request, ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llamacpp extra not installed")
    from ray import serve

    store = tmp_path_factory.mktemp("store")
    plan, artifacts = build_demo(store, request.param)
    app = build_app(AppArgs(plan=plan, model_name=MODEL, artifacts=artifacts,
                            serving=ServingSpec(max_waiting=64, max_context=CONTEXT)))
    port = free_port()
    base = deploy(app, port)
    yield {"base": base, "plan": plan, "artifacts": artifacts, "store": store, "port": port}
    serve.shutdown()


def status(base):
    return get(f"{base}/status")[1]


def metrics_text(base) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        return r.read().decode()


def replica_failures(base) -> float:
    """orchestrator_errors_total over every replica_failed* kind (each series is exported
    from zero, so its name is always there)."""
    import re

    return sum(float(v) for v in re.findall(
        r'^orchestrator_errors_total\{[^}]*kind="replica_failed[^"]*"[^}]*\} (\S+)$',
        metrics_text(base), re.M))


def test_engines_are_loaded_before_the_endpoint_says_ready(stack):
    code, health, _ = get(f"{stack['base']}/health")
    assert code == 200 and health["status"] == "ok"
    for dep, p in health["pools"].items():
        assert p["state"] == "ready" and p["replicas"] == 1, (dep, p)
        assert p["load_s"] is not None and p["restarts"] == 0


def test_two_hundred_clients_that_leave_before_their_first_token_free_everything(stack):
    base = stack["base"]
    prompt = "Tell me a long story about a lighthouse keeper. " * 12  # ~130 tokens
    sent = asyncio.run(disconnect_storm(base, {"model": MODEL, "prompt": prompt,
                                               "max_tokens": 64}, 200))
    assert sent == 200
    # llama-server stops the prompts it had begun for them at the end of an iteration
    wait_for(lambda: settled(base), 90, "no request left in flight, waiting or running")
    for precision in ("f16", "q4_k_m"):  # each replica serves at once
        code, body, _ = post(f"{base}/v1/completions", {
            "model": f"{MODEL}:{precision}", "prompt": "Hello", "max_tokens": 2}, timeout=60)
        assert code == 200 and body["usage"]["completion_tokens"] <= 2
    # (replicas report their engine's counts every half second; a llama-server replica
    # counts the slots of requests that reached it after their clients left until the
    # server has stopped them)
    wait_for(lambda: settled(base), 90, "idle again after the two answers")


def test_a_client_leaving_mid_stream_stops_the_engine(stack):
    import openai

    base = stack["base"]
    c = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
    stream = c.completions.create(model=f"{MODEL}:q4_k_m", prompt="Once upon a time",
                                  max_tokens=900, stream=True, temperature=1.0)
    got = 0
    for _ in stream:
        got += 1
        if got == 5:
            break
    stream.close()
    # 900 tokens take ~20 s at this model's speed; the engine stops within a step
    wait_for(lambda: idle(base), 8, "the engine stopped decoding for the client that left")


def test_stream_without_include_usage_sends_no_usage_chunk(stack):
    import urllib.request

    req = urllib.request.Request(
        f"{stack['base']}/v1/completions", method="POST",
        data=json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 3,
                         "stream": True}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        events = [ln[6:] for ln in r.read().decode().splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


@pytest.mark.parametrize("path, body, param, code", [
    ("/v1/chat/completions",  # the model's template refuses two user turns in a row
     {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "messages", "invalid_messages"),
    ("/v1/completions", {"prompt": "Hi", "seed": 2**64}, "seed", None),
    ("/v1/completions",  # ~1200 characters the router counts as ~300 tokens; Gemma's
     # tokenizer makes far more of them, over the 1024-token context
     {"prompt": "🦙🛰️" * 600, "max_tokens": 8}, "max_tokens", "context_length_exceeded"),
])
def test_the_requests_own_faults_are_400s_that_hold_nothing_against_a_replica(
        stack, path, body, param, code):
    base = stack["base"]
    status_code, resp, _ = post(f"{base}{path}", {"model": MODEL, **body})
    assert status_code == 400, resp
    err = resp["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if code:
        assert err["code"] == code
    assert "Traceback" not in err["message"] and "File " not in err["message"]
    st = status(base)
    assert not any(r["suspect"] for p in st["pools"].values() for r in p["replicas"])
    assert replica_failures(base) == 0
    code2, ok, _ = post(f"{base}/v1/completions", {"model": MODEL, "prompt": "Hi",
                                                   "max_tokens": 2})
    assert code2 == 200, ok


# -- a second application: one corrupted artifact, one impatient pool ---------------------

@pytest.fixture(scope="module")
def second(stack):
    from ray import serve

    art = dict(stack["artifacts"])
    bad = stack["store"] / "corrupted"
    shutil.copytree(art["cpu-throughput"], bad / "k")
    gguf = bad / "k" / "model.gguf"
    with open(gguf, "r+b") as fh:  # one flipped byte in the weights
        fh.seek(gguf.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    art["cpu-throughput"] = str(bad / "k")
    app = build_app(AppArgs(plan=stack["plan"], model_name=MODEL, artifacts=art,
                            serving=ServingSpec(first_token_timeout_s=0.3,
                                                max_context=CONTEXT)))
    try:
        serve.run(app, name="second", route_prefix="/x", blocking=False)
    except RuntimeError as e:  # Serve may see the broken pool fail before it returns
        assert "pool-cpu-throughput" in str(e)
    base = f"{stack['base']}/x"
    yield base
    serve.delete("second")


def test_a_corrupted_artifact_fails_its_pool_at_start_with_the_reason(second):
    with pytest.raises(lifecycle.PoolFailed) as e:
        lifecycle.wait_ready(second, 180)
    assert "pool-cpu-throughput failed to load" in str(e.value)
    assert "corrupted" in str(e.value) and "sha256" in str(e.value)
    health = get(f"{second}/health")[1]
    assert health["pools"]["pool-cpu-throughput"]["state"] == "failed"


def test_a_first_token_timeout_is_a_504_and_frees_the_engine(second):
    wait_for(lambda: get(f"{second}/health")[1]["pools"]["pool-cpu-quality"]["state"]
             == "ready", 180, "the impatient pool loads")
    long_prompt = "The history of lighthouses. " * 120  # ~700 tokens: seconds of prefill
    code, body, _ = post(f"{second}/v1/completions",
                         {"model": f"{MODEL}:f16", "prompt": long_prompt, "max_tokens": 4})
    assert code == 504 and body["error"]["code"] == "timeout", body
    wait_for(lambda: idle(second), 30, "the timed-out request leaves the engine")
