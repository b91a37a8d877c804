"""Real clients beyond the openai one, against the real demo (two llama-server pools of
Gemma 3 270M behind one endpoint): LangChain's ChatOpenAI and LiteLLM's `completion`, each
chatting, streaming, and asking for an answer that follows a JSON schema.

The demo model is a base model: its answers are fluent but follow no instruction, so the
assertions are about the protocol (roles, streamed text, usage) and, for the schema, about
the shape of the answer, which the endpoint's grammar constraint guarantees whatever the
model would have said."""

import json
import os

import pytest
from pydantic import BaseModel, Field

from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.ray.serve_util import build_demo, deploy, free_port

# LiteLLM fetches its model price map from the internet at import unless told not to.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"CPU": 1, "gpu_group:cpu-quality": 1},
         "cpu-throughput": {"CPU": 1, "gpu_group:cpu-throughput": 1}}
MODEL = "gemma-3-270m"
MESSAGES = [{"role": "user", "content": "Name a colour."}]


class Colour(BaseModel):
    """Bounded fields keep a grammar-constrained answer short whatever the model says."""
    name: str = Field(max_length=16)
    bright: bool


SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 16},
                         "bright": {"type": "boolean"}},
          "required": ["name", "bright"], "additionalProperties": False}


@pytest.fixture(scope="module")
def base(ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llamacpp extra not installed")
    from ray import serve

    plan, artifacts = build_demo(tmp_path_factory.mktemp("store"))
    yield deploy(build_app(AppArgs(plan=plan, model_name=MODEL, artifacts=artifacts)),
                 free_port())
    serve.shutdown()


def _chat_model(base, max_tokens: int):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, base_url=f"{base}/v1", api_key="none", temperature=0,
                      max_tokens=max_tokens, max_retries=0, timeout=120)


def _litellm(base, **kwargs):
    import litellm

    return litellm.completion(model=f"openai/{MODEL}", api_base=f"{base}/v1",
                              api_key="none", messages=MESSAGES, temperature=0,
                              num_retries=0, timeout=120, **kwargs)


def test_langchain_invoke_and_stream_agree(base):
    chat_model = _chat_model(base, max_tokens=12)
    msg = chat_model.invoke(MESSAGES)
    assert msg.content and msg.response_metadata["finish_reason"] in ("stop", "length")
    usage = msg.usage_metadata
    assert 0 < usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    chunks = list(chat_model.stream(MESSAGES))
    assert len(chunks) > 1
    assert "".join(c.content for c in chunks) == msg.content


def test_langchain_structured_output_follows_the_schema(base):
    structured = _chat_model(base, max_tokens=200).with_structured_output(
        Colour, method="json_schema", include_raw=True)
    out = structured.invoke(MESSAGES)
    assert out["parsing_error"] is None, out["raw"].content
    assert isinstance(out["parsed"], Colour) and len(out["parsed"].name) <= 16


def test_litellm_chat_and_stream_agree(base):
    r = _litellm(base, max_tokens=12)
    text = r.choices[0].message.content
    assert text and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(_litellm(base, max_tokens=12, stream=True))
    assert len(chunks) > 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_litellm_json_schema_answer_validates(base):
    import jsonschema

    r = _litellm(base, max_tokens=200, response_format={
        "type": "json_schema",
        "json_schema": {"name": "colour", "schema": SCHEMA, "strict": True}})
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


def test_litellm_json_object_answer_is_constrained(base):
    """Without a schema nothing bounds the object: the base model fills a string until
    max_tokens (measured), so the answer may not close; it opens an object all the same,
    where the unconstrained answer is prose."""
    r = _litellm(base, max_tokens=48, response_format={"type": "json_object"})
    text = r.choices[0].message.content
    assert text.lstrip().startswith("{"), text
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
