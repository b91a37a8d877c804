"""OpenAI request and response shapes, and OpenAI-shaped errors."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)

MAX_STOP = 4


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None  # an assistant turn that called tools may have none
    name: str | None = None
    tool_calls: list[dict] | None = None  # an assistant turn's earlier calls
    tool_call_id: str | None = None  # a tool turn answers this call

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

    @model_validator(mode="after")
    def _said_something(self):
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required (an assistant turn may give tool_calls "
                             "instead)")
        return self

    def for_template(self) -> dict:
        """What a chat template sees: the fields that were given."""
        return self.model_dump(exclude_none=True)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field("answer", max_length=64)
    schema_: dict = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs json_schema: {name, schema}")
        return self

    def schema_text(self) -> str | None:
        """The JSON schema the answer must satisfy, as JSON text; None for plain text.
        json_object is any JSON object."""
        if self.type == "json_object":
            return json.dumps({"type": "object"})
        if self.type == "json_schema":
            return json.dumps(self.json_schema.schema_, sort_keys=True)
        return None


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: Function


class NamedTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: dict

    @field_validator("function")
    @classmethod
    def _named(cls, v):
        if not isinstance(v.get("name"), str):
            raise ValueError("tool_choice.function needs a name")
        return v


MAX_N = 16  # choices per prompt (n); more is a batch job, not a request
MAX_PROMPTS = 64  # prompts in one completion request


def _unset(value, *neutral) -> bool:
    return value is None or value in neutral or value == {} or value == []


class _Common(BaseModel):
    # Fields OpenAI's clients send that change nothing (user, metadata, store, ...) and
    # unknown ones are ignored; every field that changes the answer is declared here and
    # either honoured or refused with a 400 naming it (serve/fields.py: which pools can).
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
    n: int = Field(1, ge=1, le=MAX_N)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    functions: list | None = None
    function_call: str | dict | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, v):
        for k, bias in (v or {}).items():
            if not k.isdigit():
                raise ValueError(f"keys are token ids (integers as strings); got {k!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases lie in [-100, 100]; token {k} has {bias}")
        return v

    @field_validator("functions", "function_call")
    @classmethod
    def _deprecated(cls, v):
        if not _unset(v, "none", "auto"):
            raise ValueError("the deprecated functions API is not served; send tools and "
                             "tool_choice")
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

    def schema_text(self) -> str | None:
        return self.response_format.schema_text() if self.response_format else None

    def logprob_count(self) -> int | None:
        """Alternatives per token to return (0: the chosen token's alone), or None."""
        raise NotImplementedError

    def calls_tools(self) -> bool:
        return False  # completions take no tools


class CompletionRequest(_Common):
    prompt: list[str] = Field(min_length=1, max_length=MAX_PROMPTS)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("suffix")
    @classmethod
    def _no_infill(cls, v):
        if not _unset(v, ""):
            raise ValueError("fill-in-the-middle is not served; leave suffix out")
        return v

    # Cross-field rules are checked on the later field (pydantic validates in declaration
    # order), so the 400's `param` names a field.
    @field_validator("logprobs")
    @classmethod
    def _not_with_echo(cls, v, info: ValidationInfo):
        if v is not None and info.data.get("echo"):
            raise ValueError("echo with logprobs needs the prompt's logprobs, which no pool "
                             "returns; send one or the other")
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v, info: ValidationInfo):
        n = info.data.get("n", 1)
        if v not in (None, n):
            raise ValueError(f"best_of {v} other than n ({n}) is not served: set best_of to "
                             "n or leave it out")
        return v

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompts(cls, v):
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and v and all(isinstance(p, str) for p in v):
            if not all(v):
                raise ValueError("a prompt in the list is empty")
            return v
        if isinstance(v, list) and v:
            raise ValueError("token-id prompts are not served: send the prompt as text "
                             "(a string or a list of strings)")
        return v

    def logprob_count(self) -> int | None:
        return self.logprobs


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, v, info: ValidationInfo):
        if v and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    @field_validator("tools")
    @classmethod
    def _one_constraint(cls, v, info: ValidationInfo):
        fmt = info.data.get("response_format")
        if v and fmt is not None and fmt.type != "text":
            raise ValueError("tools and a response_format schema constrain the same answer; "
                             "send one")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _a_known_tool(cls, v, info: ValidationInfo):
        names = {t.function.name for t in info.data.get("tools") or ()}
        if isinstance(v, NamedTool) and v.function["name"] not in names:
            raise ValueError(f"tool_choice names {v.function['name']!r}, which is not in "
                             f"tools ({', '.join(sorted(names)) or 'none'})")
        if v == "required" and not names:
            raise ValueError("tool_choice 'required' needs tools")
        return v

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def tool_choice_value(self) -> str | dict | None:
        """tool_choice as engines/tools.py takes it: a name, or the named-function dict."""
        if isinstance(self.tool_choice, NamedTool):
            return self.tool_choice.model_dump()
        return self.tool_choice


def not_unicode(body) -> str | None:
    """The path of the first string in a parsed body that is not valid Unicode (a lone
    surrogate, which JSON's \\u escapes can spell and no tokenizer can encode), else None.
    Pydantic refuses such a string in some positions and lets it through in others."""
    stack = [((), body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # the path itself is written so it can be sent
                return ".".join(str(p).encode("utf-8", "backslashreplace").decode()
                                for p in path) or "body"
        elif isinstance(value, dict):
            stack += [((*path, k), v) for k, v in value.items()]
            stack += [((*path, k), k) for k in value]
        elif isinstance(value, list):
            stack += [((*path, i), v) for i, v in enumerate(value)]
    return None


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
