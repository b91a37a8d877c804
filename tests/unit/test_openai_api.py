"""The request surface: each field that changes the answer is parsed into what the engines
take, or refused naming itself; fields that change nothing are accepted."""

import json

import pytest
from pydantic import ValidationError

from orchestrator.serve.openai_api import ChatRequest, CompletionRequest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def refused(model, body, field):
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    err = e.value.errors()[0]
    assert err["loc"][0] == field, err  # the 400's param names the field
    return err["msg"]


def test_sampling_fields_are_parsed():
    r = ChatRequest.model_validate({**CHAT, "presence_penalty": 0.5, "frequency_penalty": -1,
                                    "logit_bias": {"50256": -100}, "logprobs": True,
                                    "top_logprobs": 3, "n": 2})
    assert (r.presence_penalty, r.frequency_penalty, r.n) == (0.5, -1, 2)
    assert r.logit_bias == {"50256": -100} and r.logprob_count() == 3
    assert ChatRequest.model_validate({**CHAT, "logprobs": True}).logprob_count() == 0
    assert ChatRequest.model_validate(CHAT).logprob_count() is None
    assert CompletionRequest.model_validate({**COMPLETION, "logprobs": 2}).logprob_count() == 2


@pytest.mark.parametrize("field, value", [
    ("presence_penalty", 2.5), ("frequency_penalty", -3), ("n", 0), ("n", 17),
    ("logit_bias", {"the": 1}), ("logit_bias", {"5": 101}), ("top_logprobs", 21),
])
def test_out_of_range_values_name_the_field(field, value):
    refused(ChatRequest, {**CHAT, field: value, "logprobs": True}, field)


def test_response_format_becomes_a_schema():
    obj = ChatRequest.model_validate({**CHAT, "response_format": {"type": "json_object"}})
    assert json.loads(obj.schema_text()) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    r = ChatRequest.model_validate({**CHAT, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}})
    assert json.loads(r.schema_text()) == schema
    assert ChatRequest.model_validate({**CHAT, "response_format": {"type": "text"}}
                                      ).schema_text() is None
    refused(ChatRequest, {**CHAT, "response_format": {"type": "json_schema"}},
            "response_format")
    refused(ChatRequest, {**CHAT, "response_format": {"type": "yaml"}}, "response_format")


def test_tools_and_tool_choice():
    r = ChatRequest.model_validate({**CHAT, "tools": [TOOL], "tool_choice": "required"})
    assert r.calls_tools() and r.tools[0].function.name == "get_weather"
    assert not ChatRequest.model_validate({**CHAT, "tools": [TOOL], "tool_choice": "none"}
                                          ).calls_tools()
    msg = refused(ChatRequest, {**CHAT, "tools": [TOOL], "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}, "tool_choice")
    assert "get_weather" in msg
    refused(ChatRequest, {**CHAT, "tool_choice": "required"}, "tool_choice")
    refused(ChatRequest, {**CHAT, "functions": [{"name": "f"}]}, "functions")


def test_assistant_turns_with_tool_calls_and_tool_turns():
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}
    r = ChatRequest.model_validate({**CHAT, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]})
    assert r.messages[1].for_template() == {"role": "assistant", "tool_calls": [call]}
    assert "content is required" in refused(ChatRequest, {**CHAT, "messages": [
        {"role": "user"}]}, "messages")


def test_prompts_and_echo():
    r = CompletionRequest.model_validate({**COMPLETION, "prompt": ["a", "b"], "echo": True})
    assert r.prompt == ["a", "b"] and r.echo
    assert CompletionRequest.model_validate(COMPLETION).prompt == ["hi"]
    assert "text" in refused(CompletionRequest, {**COMPLETION, "prompt": [1, 2]}, "prompt")
    refused(CompletionRequest, {**COMPLETION, "prompt": ["a", ""]}, "prompt")
    refused(CompletionRequest, {**COMPLETION, "echo": True, "logprobs": 1}, "logprobs")
    refused(CompletionRequest, {**COMPLETION, "suffix": "end"}, "suffix")
    refused(CompletionRequest, {**COMPLETION, "best_of": 3}, "best_of")
    assert CompletionRequest.model_validate({**COMPLETION, "n": 2, "best_of": 2}).n == 2


def test_fields_without_effect_are_accepted():
    body = {**CHAT, "presence_penalty": 0, "logit_bias": {}, "logprobs": False,
            "response_format": {"type": "text"}, "tools": [], "tool_choice": "none",
            "user": "u-1", "metadata": {"k": "v"}, "store": False, "service_tier": "auto",
            "parallel_tool_calls": True}
    assert ChatRequest.model_validate(body).model == "m"
    assert CompletionRequest.model_validate({**COMPLETION, "echo": False, "best_of": 1,
                                             "suffix": ""}).prompt == ["hi"]


def test_lone_surrogates_are_found_wherever_they_are():
    from orchestrator.serve.openai_api import not_unicode

    assert not_unicode(json.loads('{"prompt": ["ok", "\\ud800"]}')) == "prompt.1"
    assert not_unicode(json.loads('{"messages": [{"content": "\\udfff"}]}')) \
        == "messages.0.content"
    assert not_unicode({"\ud800": 1}) == "\\ud800"  # a key: named so it can be sent
    assert not_unicode({"prompt": "fine ✓", "n": 2}) is None
