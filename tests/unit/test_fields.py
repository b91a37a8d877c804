"""Which pools a request may use by the fields it sends, tool calls, and the shapes of
logprobs: each field reaches only a pool that honours it, or is a 400 naming it."""

import json

import pytest

from orchestrator.backends import BACKENDS
from orchestrator.backends.simulated import Simulated
from orchestrator.engines.base import TokenLogprob
from orchestrator.engines.features import FIELDS, JSON_SCHEMA, LOGPROBS, TOOLS
from orchestrator.engines.tools import forced_schema, parse_call
from orchestrator.engines.upstream import token_logprobs
from orchestrator.serve import fields
from orchestrator.serve.contract import PoolFacts
from orchestrator.serve.openai_api import ApiError, ChatRequest, CompletionRequest
from orchestrator.serve.openai_out import logprobs_json
from tests.unit.test_dispatch import F16, INT4, POOLS

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def facts(features: dict[str, frozenset]) -> dict[str, PoolFacts]:
    return {dep: PoolFacts(f.pool, f.precision, f.node_plan, f.max_context, f.max_waiting,
                           engine=f"engine-{dep}", features=features[dep])
            for dep, f in POOLS.items()}


def chat(**kw):
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user",
                                                                   "content": "hi"}], **kw})


def test_needed_names_each_field():
    assert fields.needed(chat()) == {}
    assert fields.needed(chat(logprobs=True, top_logprobs=2)) == {LOGPROBS: "top_logprobs"}
    assert fields.needed(chat(tools=[TOOL])) == {TOOLS: "tools"}
    assert fields.needed(chat(tools=[TOOL], tool_choice="none")) == {}
    assert fields.needed(CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "response_format": {"type": "json_object"}})) == {
        JSON_SCHEMA: "response_format"}


def test_a_field_routes_only_to_pools_that_honour_it():
    pools = facts({F16: frozenset({LOGPROBS}), INT4: frozenset()})
    wants = fields.needed(chat(logprobs=True))
    assert fields.eligible(pools, wants, None, None) == {F16}
    assert fields.eligible(pools, {}, None, None) is None


def test_no_pool_honours_it_is_a_400_naming_the_field_and_who_can():
    pools = facts({F16: frozenset({LOGPROBS}), INT4: frozenset()})
    int4 = POOLS[INT4].precision
    with pytest.raises(ApiError) as e:  # pinned to the pool that cannot
        fields.eligible(pools, {LOGPROBS: "logprobs"}, int4, None)
    err = e.value.body["error"]
    assert e.value.status == 400 and err["param"] == "logprobs"
    assert err["code"] == "unsupported_field"
    assert F16 in err["message"] and INT4 in err["message"]
    with pytest.raises(ApiError) as e:
        fields.eligible(facts({F16: frozenset(), INT4: frozenset()}),
                        {JSON_SCHEMA: "response_format"}, None, None)
    assert "no pool of this deployment does" in e.value.body["error"]["message"]


def test_backends_declare_what_they_honour():
    for b in BACKENDS.values():
        assert b.features <= set(FIELDS), b.id
        assert set(b.feature_notes) <= set(FIELDS), b.id
    assert Simulated().honours() == frozenset()  # a timing model honours nothing
    assert TOOLS in BACKENDS["vllm"].honours()  # tool calls go through the schema path


def test_a_named_tool_choice_from_a_request_forces_that_call():
    r = chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    schema = forced_schema([t.model_dump() for t in r.tools], r.tool_choice_value())
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert forced_schema([TOOL], chat(tools=[TOOL]).tool_choice_value()) is None  # auto


def test_fields_no_single_pool_honours_together_are_named_together():
    pools = facts({F16: frozenset({LOGPROBS}), INT4: frozenset({JSON_SCHEMA})})
    with pytest.raises(ApiError) as e:
        fields.eligible(pools, {LOGPROBS: "logprobs", JSON_SCHEMA: "response_format"},
                        None, None)
    msg = e.value.body["error"]["message"]
    assert "no pool honours logprobs and response_format together" in msg
    assert f"{F16} honours logprobs" in msg and f"{INT4} honours response_format" in msg


def test_a_floor_that_excludes_the_pools_that_can_is_said():
    from orchestrator.models.precision import PRECISIONS

    pools = facts({F16: frozenset(), INT4: frozenset({LOGPROBS})})
    with pytest.raises(ApiError) as e:
        fields.eligible(pools, {LOGPROBS: "logprobs"}, None,
                        PRECISIONS[POOLS[F16].precision].rank, "m")
    assert "below the x-min-precision floor" in e.value.body["error"]["message"]
    with pytest.raises(ApiError) as e:
        fields.eligible(pools, {LOGPROBS: "logprobs"}, POOLS[F16].precision, None, "m")
    assert f"'m:{POOLS[INT4].precision}'" in e.value.body["error"]["message"]


def test_llama_seeds_stay_deterministic():
    from orchestrator.backends.llamacpp import SEED_MASK, llama_seed

    assert llama_seed(-1) == llama_seed(SEED_MASK) == SEED_MASK - 1  # never "random"
    assert llama_seed(2**63 - 1) != SEED_MASK and llama_seed(7) == 7


def test_forced_tool_schema_and_parsing():
    one = forced_schema([TOOL], "required")
    assert one["properties"]["name"] == {"const": "get_weather"}
    assert forced_schema([TOOL], "auto") is None
    assert forced_schema([TOOL], {"type": "function", "function": {"name": "get_weather"}}) \
        == one
    call = parse_call('{"name": "get_weather", "arguments": {"city": "Oslo"}}', [TOOL])
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    # Llama 3.1's JSON format, and Hermes-style tags
    assert parse_call('{"name": "get_weather", "parameters": {"city": "Oslo"}}', [TOOL])
    assert parse_call('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>',
                      [TOOL])
    for text in ("It is sunny.", '{"name": "other", "arguments": {}}', "[1]", "{bad"):
        assert parse_call(text, [TOOL]) is None


def test_upstream_logprobs_in_both_shapes():
    server = {"content": [{"id": 1, "token": " a", "logprob": -0.1, "top_logprobs": [
        {"token": " a", "logprob": -0.1}, {"token": " b", "logprob": -2.0}]}]}
    assert token_logprobs(server, 1) == (TokenLogprob(" a", -0.1, ((" a", -0.1),)),)
    legacy = {"tokens": [" a"], "token_logprobs": [-0.1],
              "top_logprobs": [{" b": -2.0, " a": -0.1}]}
    assert token_logprobs(legacy, 2) == (TokenLogprob(" a", -0.1, ((" a", -0.1),
                                                                  (" b", -2.0))),)
    assert token_logprobs(server, None) == () and token_logprobs(None, 1) == ()


def test_logprobs_shapes():
    items = [TokenLogprob("He", -0.5, (("He", -0.5),)), TokenLogprob("llo", -1.0)]
    c = logprobs_json(True, items)
    assert c["content"][0] == {"token": "He", "logprob": -0.5, "bytes": [72, 101],
                               "top_logprobs": [{"token": "He", "logprob": -0.5,
                                                 "bytes": [72, 101]}]}
    legacy = logprobs_json(False, items, offset=3)
    assert legacy == {"tokens": ["He", "llo"], "token_logprobs": [-0.5, -1.0],
                      "top_logprobs": [{"He": -0.5}, {}], "text_offset": [3, 5]}
    assert json.loads(json.dumps(c)) == c  # plain JSON, nothing a stream cannot carry


def test_the_docs_table_is_what_each_backend_declares():
    """docs/serving.md's field table, row by row, against Backend.honours()."""
    from pathlib import Path

    from orchestrator.engines.features import FIELDS

    text = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    lines = text[text.index("| field | `llamacpp`"):].splitlines()
    header = [c.strip().strip("`") for c in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells[1:]))
    engines = {b: (Simulated() if b == "simulated" else BACKENDS[b]) for b in header}
    assert set(header) == set(BACKENDS) | {"simulated"}
    for feature, fields_ in FIELDS.items():
        label = next(k for k in rows if k.startswith(f"`{fields_.split(',')[0].split()[0]}`"))
        want = {b: "yes" if feature in e.honours() else "no" for b, e in engines.items()}
        assert rows[label] == want, (feature, rows[label])
    ingress = next(k for k in rows if k.startswith("`n`"))
    assert set(rows[ingress].values()) == {"yes"}
