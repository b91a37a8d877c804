"""The real demo: two pools of Gemma 3 270M (F16 and Q4_K_M, built with llama.cpp's
quantizer) on two emulated CPU node types, behind one endpoint, spoken to with the official
openai client; once on llama.cpp's llama-server (the demo's backend: the binary compiled
for the node type, continuous batching over slots) and once on llama-cpp-python."""

import urllib.request

import pytest

from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests import dashboard
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


def test_every_series_the_dashboard_queries_is_exported(client):
    """helm/orchestrator/dashboards/orchestrator.json against this live /metrics, after a
    streamed request (histograms have series): every series and label its queries use.
    The autoscaling series exist only where autoscaling is on: test_scale_from_zero.py."""
    c, base = client
    list(c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4,
                              stream=True))
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    assert dashboard.missing(
        text, lambda name: not name.startswith("orchestrator_autoscaling_")) == []
    assert 'orchestrator_http_requests_total{code="200"' in text


# -- the request surface, field by field (docs/serving.md's table) ---------------------------
SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 16},
                                           "count": {"type": "integer"}},
          "required": ["colour", "count"], "additionalProperties": False}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def _backend(request) -> str:
    return request.node.callspec.params["client"]


def _refused(call, param: str, code: str) -> str:
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        call()
    err = e.value.body
    assert (err["param"], err["code"]) == (param, code), err
    return err["message"]


def test_each_field_reaches_the_pools_that_honour_it(client, request):
    import json

    import jsonschema

    from orchestrator.backends import serving_backend

    c, _ = client
    honours = serving_backend(_backend(request)).honours()
    assert {"json_schema", "logit_bias", "penalties"} <= honours
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}}
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content":
                                  "A colour and a count, as JSON."}], max_tokens=60,
                                  temperature=0, response_format=fmt)
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    r = c.completions.create(model=MODEL, prompt="JSON:", max_tokens=60, temperature=0,
                             extra_body={"response_format": {"type": "json_object"}})
    assert isinstance(json.loads(r.choices[0].text), dict)
    base = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6,
                                temperature=0).choices[0].text
    shifted = c.completions.create(model=MODEL, prompt="The capital of France is",
                                   max_tokens=6, temperature=0, presence_penalty=2.0,
                                   frequency_penalty=2.0, logit_bias={"506": -100})
    assert shifted.choices[0].text != base  # 506 is " the", the greedy answer's first token
    lp = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
          "temperature": 0, "logprobs": True, "top_logprobs": 2}
    if "logprobs" in honours:
        r = c.chat.completions.create(**lp)
        items = r.choices[0].logprobs.content
        assert len(items) == r.usage.completion_tokens
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in items)
        r = c.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0,
                                 logprobs=1)
        assert len(r.choices[0].logprobs.token_logprobs) == r.usage.completion_tokens
        assert "".join(r.choices[0].logprobs.tokens) == r.choices[0].text
    else:
        msg = _refused(lambda: c.chat.completions.create(**lp), "top_logprobs",
                       "unsupported_field")
        assert "pool-cpu-quality" in msg and "no pool of this deployment does" in msg
    # the demo model's template takes no tools: refused where the model would not see them
    _refused(lambda: c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Oslo?"}],
        max_tokens=8, tools=[TOOL], tool_choice="required"), "tools", "tools_unsupported")


def test_n_a_list_of_prompts_and_echo(client):
    c, _ = client
    r = c.completions.create(model=MODEL, prompt=["One, two,", "Red, green,"], n=2,
                             max_tokens=3, echo=True, seed=7)
    assert [ch.index for ch in r.choices] == [0, 1, 2, 3]
    assert [ch.text.startswith(p) for ch, p in zip(
        r.choices, ["One, two,"] * 2 + ["Red, green,"] * 2)] == [True] * 4
    each = [c.completions.create(model=MODEL, prompt=p, max_tokens=1).usage.prompt_tokens
            for p in ("One, two,", "Red, green,")]
    assert r.usage.prompt_tokens == sum(each)  # each prompt once, whatever n
    assert 4 <= r.usage.completion_tokens <= 12
    chunks = list(c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say a word."}], n=2,
        max_tokens=3, stream=True))
    finished = {ch.choices[0].index: ch.choices[0].finish_reason for ch in chunks
                if ch.choices and ch.choices[0].finish_reason}
    assert set(finished) == {0, 1}
