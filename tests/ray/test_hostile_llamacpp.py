"""The hostile-input suite of test_hostile_input.py against the real llama.cpp pools (Gemma 3
270M, F16 and Q4_K_M) instead of simulated engines: the same hypothesis bodies, raw bytes
and schemathesis runs, and the same access control and size limits. The demo is served
under the name that suite sends (its MODEL), with its key, and with a short default output
and context so that every valid body answers in a second on these cores. Every answer is
below 500, every error is OpenAI-shaped, and the endpoint still serves afterwards."""

import pytest

from orchestrator.config import ServingSpec
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from orchestrator.serve.auth import digest
from tests.ray import test_hostile_input as suite
from tests.ray.serve_util import build_demo, deploy, free_port, get, post

# The suite's tests, collected here again with this module's `endpoint`.
from tests.ray.test_hostile_input import (  # noqa: F401
    operations, test_a_field_no_pool_honours_is_refused_naming_it,
    test_any_bytes_get_an_openai_error,
    test_any_json_body_gets_an_answer_or_an_openai_error, test_body_over_the_limit_is_413,
    test_chunked_body_without_length_is_cut_at_the_limit,
    test_keyed_paths_refuse_without_the_key, test_schemathesis)

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"CPU": 1, "gpu_group:cpu-quality": 1},
         "cpu-throughput": {"CPU": 1, "gpu_group:cpu-throughput": 1}}


@pytest.fixture(scope="module")
def endpoint(ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llamacpp extra not installed")
    from ray import serve

    plan, artifacts = build_demo(tmp_path_factory.mktemp("store"))
    app = build_app(AppArgs(
        plan=plan, model_name=suite.MODEL, artifacts=artifacts, key_digests=[digest(suite.KEY)],
        serving=ServingSpec(public_paths=["/health"], max_body_bytes=suite.MAX_BODY,
                            max_context=512, max_waiting=8, default_max_tokens=4)))
    base = deploy(app, free_port())
    yield base
    serve.shutdown()


def test_the_key_opens_every_path_on_real_engines(endpoint):
    assert get(endpoint + "/health")[0] == 200
    assert get(endpoint + "/v1/models", suite.AUTH)[0] == 200
    status, body, _ = post(endpoint + "/v1/completions",
                           {"model": suite.MODEL, "prompt": "hi", "max_tokens": 3}, suite.AUTH)
    assert status == 200 and 1 <= body["usage"]["completion_tokens"] <= 3


def test_the_real_pools_still_serve_and_nothing_is_left_in_flight(endpoint):
    for precision in ("f16", "q4_k_m"):
        status, body, _ = post(endpoint + "/v1/chat/completions",
                               {"model": f"{suite.MODEL}:{precision}",
                                "messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 2}, suite.AUTH)
        assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    st = get(endpoint + "/status", suite.AUTH)[1]
    assert not any(r["suspect"] for p in st["pools"].values() for r in p["replicas"])
    assert all(p["state"] == "ready" and p["restarts"] == 0 for p in st["pools"].values())
