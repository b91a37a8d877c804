"""The request surface, honestly: a field that would change the answer and that no pool
honours yet is refused naming the field; fields that change nothing are accepted."""

import pytest
from pydantic import ValidationError

from orchestrator.serve.openai_api import ChatRequest, CompletionRequest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}


@pytest.mark.parametrize("field, value", [
    ("presence_penalty", 0.5), ("frequency_penalty", -1.0), ("logit_bias", {"50256": -100}),
    ("logprobs", True), ("top_logprobs", 3), ("response_format", {"type": "json_object"}),
    ("tools", [{"type": "function", "function": {"name": "f"}}]),
    ("tool_choice", "required"), ("functions", [{"name": "f"}]), ("function_call", "f"),
])
def test_an_unserved_field_is_refused_naming_it(field, value):
    with pytest.raises(ValidationError) as e:
        ChatRequest.model_validate({**CHAT, field: value})
    (err,) = e.value.errors()
    assert err["loc"] == (field,) and "no pool serves it yet" in err["msg"]


@pytest.mark.parametrize("field, value", [("echo", True), ("suffix", "end"), ("best_of", 3),
                                          ("logprobs", 2)])
def test_completion_only_fields_too(field, value):
    with pytest.raises(ValidationError) as e:
        CompletionRequest.model_validate({**COMPLETION, field: value})
    assert e.value.errors()[0]["loc"] == (field,)


def test_neutral_values_and_fields_without_effect_are_accepted():
    body = {**CHAT, "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {},
            "logprobs": False, "response_format": {"type": "text"}, "tools": [],
            "tool_choice": "none", "user": "u-1", "metadata": {"k": "v"}, "store": False,
            "service_tier": "auto", "parallel_tool_calls": True}
    assert ChatRequest.model_validate(body).model == "m"
    assert CompletionRequest.model_validate({**COMPLETION, "echo": False, "best_of": 1,
                                             "suffix": ""}).prompt == "hi"
