"""The serving path on an emulated mixed cluster (4x A100 node, two 2x3090 nodes, a CPU
head) with simulated engines: placement, precision pinning, spill-over, errors, and a
replica killed under load."""

import concurrent.futures as cf
import time

import pytest

from orchestrator.config import ServingSpec, load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.conftest import CLUSTERS
from tests.ray.serve_util import A100, MIXED_NODES, R3090, deploy, free_port, get, post

pytestmark = pytest.mark.ray

NODES = MIXED_NODES
MODEL = "llama-3.1-70b"


@pytest.fixture(scope="module")
def endpoint(ray_cluster):
    from ray import serve

    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    app = build_app(AppArgs(plan=plan, model_name=MODEL, engine="simulated",
                            serving=ServingSpec(max_waiting=8)))
    base = deploy(app, free_port())
    yield base
    serve.shutdown()


def complete(base, model=MODEL, prompt="hello world", max_tokens=4, headers=None, **kw):
    return post(f"{base}/v1/completions",
                {"model": model, "prompt": prompt, "max_tokens": max_tokens, **kw}, headers)


def test_pools_land_on_their_node_types(endpoint, ray_cluster):
    _, ids = ray_cluster
    status, body, _ = get(f"{endpoint}/status")
    assert status == 200
    pools = body["pools"]
    a100_nodes = {r["node_id"] for r in pools[f"pool-{A100}"]["replicas"]}
    r3090_nodes = {r["node_id"] for r in pools[f"pool-{R3090}"]["replicas"]}
    assert a100_nodes == {ids["a100"]}
    assert r3090_nodes == {ids["r3090-a"], ids["r3090-b"]}


def test_models_lists_name_and_pins(endpoint):
    _, body, _ = get(f"{endpoint}/v1/models")
    assert [m["id"] for m in body["data"]] == [MODEL, f"{MODEL}:f16", f"{MODEL}:awq_int4"]


@pytest.mark.parametrize("precision", ["f16", "awq_int4"])
def test_pinned_requests_only_reach_their_precision(endpoint, precision):
    for prompt in ("hi", "x" * 6000):
        status, body, headers = complete(endpoint, f"{MODEL}:{precision}", prompt)
        assert status == 200, body
        assert headers["x-orchestrator-precision"] == precision
        assert body["usage"]["completion_tokens"] == 4


def test_unpinned_requests_spill_when_f16_is_saturated(endpoint):
    long_prompt = "y" * 30000  # ~7,500 tokens: ~1.4 s of A100 prefill each
    with cf.ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(complete, endpoint, f"{MODEL}:f16", long_prompt, 20)
                for _ in range(4)]
        time.sleep(0.5)
        spilled = [complete(endpoint, MODEL, "short question", 4) for _ in range(3)]
        assert all(f.result()[0] == 200 for f in busy)
    assert all(s == 200 for s, _, _ in spilled)
    assert {h["x-orchestrator-precision"] for _, _, h in spilled} == {"awq_int4"}
    # and when it is idle again, unpinned traffic goes back to the higher precision
    assert complete(endpoint, MODEL, "short question")[2]["x-orchestrator-precision"] == "f16"


@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL, "prompt": "hi", "temperature": "hot"}, 400, "temperature"),
    ({"model": MODEL}, 400, "prompt"),
    ({"model": "gpt-4", "prompt": "hi"}, 404, f"valid: {MODEL}, {MODEL}:f16"),
    ({"model": f"{MODEL}:q8_0", "prompt": "hi"}, 422, "pools serve awq_int4, f16"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": 200000}, 400, "200001"),
    # the simulated engine is a timing model: it honours no field that shapes the answer
    ({"model": MODEL, "prompt": "hi", "logprobs": 1}, 400, "no pool of this deployment does"),
    ({"model": MODEL, "prompt": "hi", "response_format": {"type": "json_object"}}, 400,
     "simulated engine"),
])
def test_bad_requests_get_openai_errors(endpoint, body, status, needle):
    code, resp, _ = post(f"{endpoint}/v1/completions", body)
    assert code == status, resp
    assert set(resp["error"]) >= {"message", "type", "param", "code"}
    assert needle in resp["error"]["message"]


def test_precision_floor(endpoint):
    code, _, h = complete(endpoint, headers={"x-min-precision": "fp8_w8a8"})
    assert code == 200 and h["x-orchestrator-precision"] == "f16"
    code, resp, _ = complete(endpoint, f"{MODEL}:awq_int4", headers={"x-min-precision": "f16"})
    assert code == 422 and "rank" in resp["error"]["message"]
    code, resp, _ = complete(endpoint, headers={"x-min-precision": "fp3"})
    assert code == 400 and "x-min-precision" in resp["error"]["message"]


def test_metrics_count_requests_per_pool(endpoint):
    complete(endpoint)
    with __import__("urllib.request").request.urlopen(f"{endpoint}/metrics") as r:
        text = r.read().decode()
    assert (f'orchestrator_requests_total{{outcome="ok",pool="pool-{A100}",precision="f16"}}'
            in text)
    assert "orchestrator_time_to_first_token_seconds_bucket" in text
    assert "orchestrator_ingress_requests_waiting" in text


def test_killed_replica_loses_no_non_streaming_request(endpoint):
    import os
    import signal

    def one(i):
        return complete(endpoint, f"{MODEL}:awq_int4", f"question {i}", 30, timeout=120)

    with cf.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(one, i) for i in range(10)]
        time.sleep(0.6)
        listed = get(f"{endpoint}/status")[1]["pools"][f"pool-{R3090}"]
        pids = [r["pid"] for r in listed["replicas"]]
        assert all(pids)
        os.kill(pids[0], signal.SIGKILL)  # the replica's process dies under load
        results = [f.result() for f in futures]
    assert [s for s, _, _ in results] == [200] * 10, [b for s, b, _ in results if s != 200]
    assert all(b["usage"]["completion_tokens"] == 30 for _, b, _ in results)


def test_overload_answers_429_with_retry_after(endpoint):
    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: complete(endpoint, f"{MODEL}:f16", "z" * 40000, 2),
                                range(16)))
    codes = [s for s, _, _ in results]
    assert 429 in codes and 200 in codes
    rejected = [(b, h) for s, b, h in results if s == 429]
    assert rejected[0][1].get("retry-after") == "1" or rejected[0][1].get("Retry-After") == "1"
    assert rejected[0][0]["error"]["type"] == "rate_limit_error"


def test_models_retrieve(endpoint):
    """The openai client's models.retrieve: the public name and its precision pins."""
    from openai import NotFoundError, OpenAI

    c = OpenAI(base_url=f"{endpoint}/v1", api_key="none", max_retries=0)
    assert c.models.retrieve(MODEL).id == MODEL
    assert c.models.retrieve(f"{MODEL}:f16").id == f"{MODEL}:f16"
    with pytest.raises(NotFoundError):
        c.models.retrieve("llama-9")
