"""Hostile input and access control against the live endpoint (real Ray Serve, emulated
mixed cluster, simulated engines at 1000x speed so any valid request answers at once):
schemathesis from the ingress's own OpenAPI schema, hypothesis on raw request bodies, API
keys, and the body size limit. Every answer is below 500 and every error is OpenAI-shaped."""

import http.client
import json
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.config import ServingSpec, load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from orchestrator.serve.auth import digest
from tests.conftest import CLUSTERS
from tests.ray.serve_util import MIXED_NODES, deploy, free_port, get, post

pytestmark = pytest.mark.ray
schemathesis = pytest.importorskip("schemathesis")

NODES = {k: v for k, v in MIXED_NODES.items() if k != "r3090-b"}
MODEL = "llama-3.1-70b"
KEY = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 64 * 1024
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def endpoint(ray_cluster):
    from ray import serve

    spec = load_cluster_spec(CLUSTERS / "mixed.yaml")
    plan = plan_cluster(spec.model_copy(update={"node_types": [
        nt.model_copy(update={"count": 1}) for nt in spec.node_types]}))
    app = build_app(AppArgs(
        plan=plan, model_name=MODEL, engine="simulated", time_scale=0.001,
        key_digests=[digest(KEY)],
        serving=ServingSpec(max_waiting=8, public_paths=["/health"], max_body_bytes=MAX_BODY,
                            max_context=2048)))
    base = deploy(app, free_port())
    yield base
    serve.shutdown()


def assert_openai_error(status: int, body) -> None:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and set(body.get("error", {})) >= ERROR_FIELDS, body


# -- access control ------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789abc"},
                                     {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": "Bearer"}])
def test_keyed_paths_refuse_without_the_key(endpoint, headers):
    for method, path in (("POST", "/v1/completions"), ("GET", "/v1/models"),
                         ("GET", "/metrics"), ("GET", "/status")):
        if method == "POST":
            status, body, h = post(endpoint + path, {"model": MODEL, "prompt": "hi"}, headers)
        else:
            status, body, h = get(endpoint + path, headers)
        assert status == 401, (path, body)
        assert body["error"]["code"] == "invalid_api_key"
        assert h.get("www-authenticate") == "Bearer"
        assert KEY not in json.dumps(body)


def test_the_key_opens_every_path_and_health_is_public(endpoint):
    assert get(endpoint + "/health")[0] == 200
    assert get(endpoint + "/v1/models", AUTH)[0] == 200
    assert get(endpoint + "/status", AUTH)[0] == 200
    status, body, _ = post(endpoint + "/v1/completions",
                           {"model": MODEL, "prompt": "hi", "max_tokens": 3}, AUTH)
    assert status == 200 and body["usage"]["completion_tokens"] == 3


def test_openai_client_with_and_without_the_key(endpoint):
    import openai

    good = openai.OpenAI(base_url=f"{endpoint}/v1", api_key=KEY, max_retries=0)
    assert good.completions.create(model=MODEL, prompt="hi", max_tokens=2).usage \
        .completion_tokens == 2
    bad = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="not-the-key-0123456789",
                        max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


# -- body size -----------------------------------------------------------------------------

def test_a_field_no_pool_honours_is_refused_naming_it(endpoint):
    """A field that would change the answer and that no pool here honours is a 400 naming
    it, not an answer that ignored it; fields the ingress honours for every pool work;
    fields without effect pass (also run on the real llama.cpp pools)."""
    import openai

    c = openai.OpenAI(base_url=f"{endpoint}/v1", api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    try:  # the simulated engine honours no logprobs; llama-server's pools do
        r = c.chat.completions.create(model=MODEL, max_tokens=2, logprobs=True, messages=msgs)
        assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens
    except openai.BadRequestError as e:
        assert (e.body["param"], e.body["code"]) == ("logprobs", "unsupported_field")
    with pytest.raises(openai.BadRequestError) as e:  # no pool here renders tools
        c.chat.completions.create(model=MODEL, max_tokens=2, messages=msgs, tools=[
            {"type": "function", "function": {"name": "f"}}])
    assert e.value.body["param"] == "tools"
    r = c.completions.create(model=MODEL, max_tokens=2, prompt="hi", echo=True, n=2)
    assert [ch.text[:2] for ch in r.choices] == ["hi", "hi"]
    r = c.chat.completions.create(model=MODEL, max_tokens=2, user="u-1", store=False,
                                  messages=msgs)
    assert r.choices[0].finish_reason in ("length", "stop")


def test_body_over_the_limit_is_413(endpoint):
    status, body, _ = post(endpoint + "/v1/completions",
                           {"model": MODEL, "prompt": "x" * (MAX_BODY + 1)}, AUTH)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert str(MAX_BODY) in body["error"]["message"]


def test_chunked_body_without_length_is_cut_at_the_limit(endpoint):
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    piece = b" " * 8192

    def chunks():  # valid JSON if it were ever read to the end: spaces, then an object
        for _ in range(MAX_BODY // len(piece) + 4):
            yield piece
        yield json.dumps({"model": MODEL, "prompt": "hi"}).encode()

    conn.request("POST", "/v1/completions", body=chunks(), encode_chunked=True,
                 headers={"content-type": "application/json", **AUTH})
    r = conn.getresponse()
    assert r.status == 413, r.read()
    assert json.loads(r.read())["error"]["code"] == "request_too_large"


# -- hypothesis on raw bodies --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)
FIELDS = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "stop", "seed", "stream", "stream_options", "n"]
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "robot", "", 3])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": json_values | st.text()}),
                    max_size=3)
max_tokens = st.sampled_from([-1, 0, 1, 3, 2**31, 10**12, "5", None, 1.5, 2049, 2047])
bodies = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from([MODEL, f"{MODEL}:f16", f"{MODEL}:awq_int4", f"{MODEL}:q9",
                              "", "gpt-4", ":"]) | json_values,
    "prompt": st.text(max_size=200) | st.just("y" * 20000) | json_values,
    "messages": messages | json_values,
    "max_tokens": max_tokens,
    "temperature": st.sampled_from([-1, 0, 0.7, 2, 3, "hot", None]),
    "top_p": st.sampled_from([0, 0.5, 1, 1.5, None]),
    "stop": st.none() | st.text(max_size=5) | st.lists(json_values, max_size=6),
    "stream": json_values,
    "n": st.sampled_from([1, 2, 0]),
}) | st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)


def _send_raw(endpoint: str, path: str, raw: bytes):
    status, body, _ = post(endpoint + path, raw, AUTH, timeout=60)
    return status, body


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, chat=st.booleans())
def test_any_json_body_gets_an_answer_or_an_openai_error(endpoint, body, chat):
    if "max_tokens" in body and body.get("stream") is True:
        body["stream"] = False  # streams report errors in-band; checked elsewhere
    path = "/v1/chat/completions" if chat else "/v1/completions"
    status, resp = _send_raw(endpoint, path, json.dumps(body).encode())
    if status != 200:
        assert_openai_error(status, resp)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300) | st.sampled_from([
    b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe\x00{", b'{"model": "\xc3\x28"}',
    b'{"model": "' + MODEL.encode() + b'", "prompt": "\xed\xa0\x80"}', b"", b"null", b"1e999",
    b'{"model": "' + MODEL.encode() + b'", "prompt": "hi", "max_tokens": 1e400}']))
def test_any_bytes_get_an_openai_error(endpoint, raw):
    for path in ("/v1/completions", "/v1/chat/completions"):
        status, resp = _send_raw(endpoint, path, raw)
        if status != 200:
            assert_openai_error(status, resp)


def test_the_ingress_is_still_up(endpoint):
    status, body, _ = post(endpoint + "/v1/chat/completions",
                           {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 2}, AUTH)
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"


# -- schemathesis from the ingress's OpenAPI schema ----------------------------------------
# (Its pytest plugin does not load under this pytest; the same cases come from each
# operation's hypothesis strategy, in both generation modes.)

@pytest.fixture(scope="module")
def operations(endpoint):
    schema = schemathesis.openapi.from_url(f"{endpoint}/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {o.path for o in ops} >= {"/v1/completions", "/v1/chat/completions", "/v1/models",
                                     "/health", "/metrics", "/status"}
    return {f"{o.method.upper()} {o.path}": o for o in ops}


def openai_shaped_errors(ctx, response, case):
    if response.status_code >= 400:
        body = response.json()
        assert set(body.get("error", {})) >= ERROR_FIELDS, body


@pytest.mark.parametrize("op, mode", [
    (op, mode) for op in ("POST /v1/completions", "POST /v1/chat/completions")
    for mode in ("positive", "negative")] + [  # GETs take no input to negate
    (op, "positive") for op in ("GET /v1/models", "GET /status", "GET /metrics")])
def test_schemathesis(operations, endpoint, op, mode):
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation.modes import GenerationMode

    strategy = operations[op].as_strategy(GenerationMode(mode), headers=AUTH)

    @settings(max_examples=40 if op.startswith("POST") else 5, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        case.call_and_validate(base_url=endpoint, timeout=60,
                               checks=[not_a_server_error, openai_shaped_errors])

    check()
