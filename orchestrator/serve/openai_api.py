"""OpenAI request and response shapes (the subset we serve), and OpenAI-shaped errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP = 4


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, v):
        # OpenAI allows a list of content parts; we serve text parts.
        if isinstance(v, list):
            texts = [p.get("text") for p in v if isinstance(p, dict) and p.get("type") == "text"
                     and isinstance(p.get("text"), str)]
            if len(texts) != len(v):
                raise ValueError("only text content parts are supported")
            return "".join(texts)
        return v


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


UNSERVED = ("no pool serves it yet; leave it out (docs/serving.md lists the fields each "
            "backend honours)")


def _unset(value, *neutral) -> bool:
    return value is None or value in neutral or value == {} or value == []


class _Common(BaseModel):
    # Fields OpenAI's clients send that change nothing (user, metadata, store, ...) and
    # unknown ones are ignored. Fields that would change the answer and that no pool
    # honours yet are declared below and refused when set, naming the field, rather than
    # answered as if they had not been sent.
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    # every engine takes a signed 64-bit seed (vLLM's limit; llama.cpp uses its low 32 bits)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    response_format: dict | None = None
    tools: list | None = None
    tool_choice: str | dict | None = None
    functions: list | None = None
    function_call: str | dict | None = None

    @field_validator("presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                     "top_logprobs", "tools", "functions")
    @classmethod
    def _unserved(cls, v):
        if not _unset(v, 0, False):
            raise ValueError(UNSERVED)
        return v

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, v):
        if not _unset(v) and v.get("type") != "text":
            raise ValueError(f"only {{'type': 'text'}}: {UNSERVED}")
        return v

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_call(cls, v):
        if not _unset(v, "none", "auto"):
            raise ValueError(UNSERVED)
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if isinstance(v, str):
            v = [v]
        if v is not None and (len(v) > MAX_STOP or any(not s for s in v)):
            raise ValueError(f"at most {MAX_STOP} non-empty stop sequences")
        return v

    def output_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionRequest(_Common):
    prompt: str = Field(min_length=1)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("echo", "suffix")
    @classmethod
    def _unserved_here(cls, v):
        if not _unset(v, False, ""):
            raise ValueError(UNSERVED)
        return v

    @field_validator("best_of")
    @classmethod
    def _one_of_one(cls, v):
        if not _unset(v, 1):
            raise ValueError(UNSERVED)
        return v

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) == 1 and isinstance(v[0], str):
                return v[0]
            raise ValueError("a single prompt string is supported")
        return v


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)


def openapi_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` for a route that parses its own body: documents the body (for
    clients and for schemathesis) without letting FastAPI reject requests before we can
    answer in OpenAI's error shape."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):  # our request models are not recursive, so refs can be inlined
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema = inline(schema)
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def error_body(message: str, type_: str, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class ApiError(Exception):
    """An answer in OpenAI's error shape with its HTTP status (and headers)."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.body = status, error_body(message, type_, param, code)
        self.headers = headers or {}


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def chunk(chat: bool, rid: str, model: str, text: str | None, finish: str | None,
          first: bool = False) -> dict:
    if chat:
        delta = {"content": text} if text else {}
        if first:
            delta = {"role": "assistant", "content": text or ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice]}


def usage_chunk(chat: bool, rid: str, model: str, usage: dict) -> dict:
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [], "usage": usage}


def full_response(chat: bool, rid: str, model: str, text: str, finish: str,
                  usage: dict) -> dict:
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": None, "finish_reason": finish}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage}


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
