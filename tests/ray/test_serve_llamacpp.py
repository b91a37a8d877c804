"""The real demo: two pools of Gemma 3 270M (F16 and Q4_K_M, built with llama.cpp's
quantizer) on two emulated CPU node types, behind one endpoint, spoken to with the official
openai client; once on llama.cpp's llama-server (the demo's backend: the binary compiled
for the node type, continuous batching over slots) and once on llama-cpp-python."""

import pytest

from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.ray.serve_util import build_demo, deploy, free_port, get

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"CPU": 1, "gpu_group:cpu-quality": 1},
         "cpu-throughput": {"CPU": 1, "gpu_group:cpu-throughput": 1}}
MODEL = "gemma-3-270m"


@pytest.fixture(scope="module", params=["llamaserver", "llamacpp"])
def client(request, ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llamacpp extra not installed")
    from openai import OpenAI
    from ray import serve

    plan, artifacts = build_demo(tmp_path_factory.mktemp("store"), request.param)
    assert {n.choice.backend for n in plan.pools()} == {request.param}
    app = build_app(AppArgs(plan=plan, model_name=MODEL, artifacts=artifacts))
    base = deploy(app, free_port())
    yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0), base
    serve.shutdown()


def test_completion_and_usage(client):
    c, _ = client
    r = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                             temperature=0)
    assert r.choices[0].finish_reason in ("length", "stop") and r.choices[0].text
    u = r.usage
    assert u.completion_tokens <= 8 and u.prompt_tokens > 3
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_streaming_completion_counts_add_up(client):
    c, _ = client
    chunks = list(c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                       stream=True, stream_options={"include_usage": True}))
    texts = [ch.choices[0].text for ch in chunks if ch.choices and ch.choices[0].text]
    usage = [ch.usage for ch in chunks if ch.usage][-1]
    assert usage.completion_tokens == 10 == len(texts)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"


def test_chat_streaming_and_not(client):
    c, _ = client
    msgs = [{"role": "user", "content": "Name a colour."}]
    r = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens <= 6
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6,
                                            temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) \
        == r.choices[0].message.content


def test_stop_and_pinned_precisions(client):
    c, _ = client
    for precision in ("f16", "q4_k_m"):
        raw = c.completions.with_raw_response.create(
            model=f"{MODEL}:{precision}", prompt="1, 2, 3, 4, 5,", max_tokens=30,
            temperature=0, stop=[" 9"])
        assert raw.headers["x-orchestrator-precision"] == precision
        r = raw.parse()
        assert " 9" not in r.choices[0].text and r.choices[0].finish_reason == "stop"


def test_both_pools_report_stats(client):
    _, base = client
    status, body, _ = get(f"{base}/status")
    assert status == 200
    pools = body["pools"]
    assert {p["precision"] for p in pools.values()} == {"f16", "q4_k_m"}
