"""The OpenAI-upstream backend against two real upstreams on the demo model: llama.cpp's
llama-server (the compiled binary) and llama-cpp-python's own server, each started by its
pool's replicas from the command in the spec with our Q4_K_M / F16 GGUF artifact, behind one
endpoint, spoken to with the official openai client: completions with usage, streams whose
counts add up, chat, stop sequences, max_tokens, precision pinning; and an upstream that
dies is replaced, its death named."""

import os
import signal
import sys

import pytest

from orchestrator.config import ClusterSpec
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.ray.serve_util import deploy, free_port, get, wait_for

pytestmark = pytest.mark.ray

NODES = {"up-server": {"CPU": 1, "gpu_group:up-server": 1},
         "up-python": {"CPU": 1, "gpu_group:up-python": 1}}
MODEL = "gemma-3-270m"


def _spec(binary: str) -> ClusterSpec:
    cpu = {"cores": 1, "memory_gb": 2.0, "memory_bandwidth_gbs": 16, "peak_tflops": 0.29}
    return ClusterSpec.model_validate({
        "name": "upstreams", "model": MODEL, "planner": {"min_context": 1024},
        "node_types": [
            {"name": "up-server", "cpu": cpu, "backends": ["upstream"],
             "precisions": ["q4_k_m"],
             "upstream": {"command": [binary, "-m", "{model}", "--host", "127.0.0.1",
                                      "--port", "{port}", "-np", "2", "-c", "4096",
                                      "-t", "{threads}", "--no-webui"],
                          "health_path": "/health", "max_batch": 2, "context": 2048}},
            {"name": "up-python", "cpu": cpu, "backends": ["upstream"],
             "precisions": ["f16"],
             "upstream": {"command": [sys.executable, "-m", "llama_cpp.server", "--model",
                                      "{model}", "--host", "127.0.0.1", "--port", "{port}",
                                      "--n_ctx", "2048", "--n_threads", "{threads}"],
                          "max_batch": 1, "context": 2048}},
        ]})


@pytest.fixture(scope="module")
def client(ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] not installed")
    from openai import OpenAI
    from ray import serve

    from orchestrator.backends import llama_server_bin as binsrc
    from orchestrator.build.runner import run_builds
    from orchestrator.build.spec import build_specs
    from orchestrator.build.store import default_store
    from orchestrator.planner.select import plan_cluster

    binary, _ = binsrc.server_binary({"isa": "avx2"}, default_store() / ".cache")
    spec = _spec(str(binary))
    plan = plan_cluster(spec)
    outcomes = run_builds(build_specs(plan, spec), tmp_path_factory.mktemp("store"))
    assert all(o.ok for o in outcomes), outcomes
    app = build_app(AppArgs(plan=plan, model_name=MODEL,
                            artifacts={o.node_type: o.path for o in outcomes}))
    base = deploy(app, free_port())
    yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0), base, plan
    serve.shutdown()


def test_the_plan_takes_the_upstreams_capacity(client):
    *_, plan = client
    by = {n.node_type: n.choice for n in plan.node_types}
    assert by["up-server"].backend == "upstream" and by["up-server"].perf.batch == 2
    assert by["up-python"].perf.batch == 1 and by["up-python"].precision == "f16"


@pytest.mark.parametrize("precision", ["q4_k_m", "f16"])
def test_completion_stream_and_usage_on_each_upstream(client, precision):
    c, _, _ = client
    m = f"{MODEL}:{precision}"
    raw = c.completions.with_raw_response.create(model=m, prompt="The capital of France is",
                                                 max_tokens=8, temperature=0)
    assert raw.headers["x-orchestrator-precision"] == precision
    r = raw.parse()
    u = r.usage
    assert r.choices[0].text and u.completion_tokens <= 8 and u.prompt_tokens > 3
    chunks = list(c.completions.create(model=m, prompt="Once upon a time", max_tokens=10,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True}))
    usage = [ch.usage for ch in chunks if ch.usage][-1]
    assert usage.completion_tokens == 10
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"


@pytest.mark.parametrize("precision", ["q4_k_m", "f16"])
def test_chat_and_stop_on_each_upstream(client, precision):
    c, _, _ = client
    m = f"{MODEL}:{precision}"
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Hi"}],
                                  max_tokens=6, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens <= 6
    s = c.completions.create(model=m, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0,
                             stop=[" 9"])
    assert " 9" not in s.choices[0].text and s.choices[0].finish_reason == "stop"


def test_a_dead_upstream_is_replaced_and_named(client):
    c, base, _ = client
    pids = [r["pid"] for p in get(f"{base}/status")[1]["pools"].values()
            if p.get("precision") == "q4_k_m" for r in p["replicas"]]
    assert pids
    children = [int(x) for x in os.popen(f"pgrep -P {pids[0]}").read().split()]
    assert children, "the replica runs its upstream as a child process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    def serves_again():
        try:
            r = c.completions.create(model=f"{MODEL}:q4_k_m", prompt="Hi", max_tokens=2)
            return r.usage.completion_tokens >= 1
        except Exception:
            return False

    wait_for(serves_again, 120, "the q4_k_m pool serves again after its upstream died")
