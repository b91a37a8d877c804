"""The engine interface every backend implements, and what flows through it."""

from __future__ import annotations

import abc
import collections
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import OrchestratorError


class EngineFault(OrchestratorError):
    """The engine failed on a request (not the user's fault): the ingress retries it on
    another replica and passes over this one for a while."""


class RequestError(OrchestratorError):
    """The request's own fault (a chat template that refuses its messages, a prompt longer
    than the context once really tokenized, a sampling value an engine cannot take): an
    HTTP 400 naming `param`, never retried, never held against the replica."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        self.message, self.param, self.code = message, param, code
        super().__init__(message)

    def __reduce__(self):  # crosses Ray's process boundary with its fields
        return (RequestError, (self.message, self.param, self.code))


def context_too_long(prompt: int, max_tokens: int, limit: int) -> RequestError:
    return RequestError(f"prompt {prompt} tokens + max_tokens {max_tokens} = "
                        f"{prompt + max_tokens} exceeds the context of {limit} tokens",
                        "max_tokens", "context_length_exceeded")


def template_error(e: Exception) -> RequestError:
    """A chat template that raised: its own message (``raise_exception`` in the template)
    tells the client what it refused; anything else is named by type only."""
    said = str(e) if isinstance(e, (ValueError, TypeError)) or type(e).__module__.startswith(
        "jinja2") else type(e).__name__
    return RequestError(f"the model's chat template refused these messages: {said[:300]}",
                        "messages", "invalid_messages")


class Progress:
    """When the engine last moved (took a request, produced a token, finished one), so a
    health check can tell a busy engine from a wedged one."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.at = clock()

    def mark(self) -> None:
        self.at = self.clock()

    def stalled_s(self, busy: bool) -> float:
        return self.clock() - self.at if busy else 0.0


@dataclass(frozen=True)
class GenerateRequest:
    request_id: str
    prompt: str | None = None
    messages: list[dict] | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias), OpenAI's scale
    logprobs: int | None = None  # alternatives per token to report (0: the chosen alone)
    json_schema: str | None = None  # the answer must satisfy this JSON schema (JSON text)
    prompt_tokens: int | None = None  # the caller's count of `prompt`, when it has one
    # `prompt` is a chat template's output, which already holds the model's special tokens
    # (BOS included): engines that would add a BOS when they encode must not add another
    rendered_chat: bool = False

    def prompt_token_count(self, engine: "Engine", prompt: str) -> int:
        return self.prompt_tokens if self.prompt_tokens is not None \
            else engine.count_tokens(prompt, rendered_chat=self.rendered_chat)


class TokenRate:
    """Tokens per second over the last `window_s`, from token counts as they come."""

    def __init__(self, window_s: float = 10.0, maxlen: int = 1024):
        self.window_s = window_s
        self.marks: collections.deque = collections.deque(maxlen=maxlen)  # (time, total)
        self.total = 0

    def add(self, tokens: int = 1) -> None:
        self.total += tokens
        self.marks.append((time.monotonic(), self.total))

    def per_s(self) -> float:
        now = time.monotonic()
        recent = [m for m in self.marks if now - m[0] <= self.window_s]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log probability, and the most likely alternatives at its step
    (as many as the request asked for)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def ranked_logprobs(out, seen: int, top: int | None, text) -> tuple[TokenLogprob, ...]:
    """The logprobs of the tokens generated since `seen`, where an engine keeps, per token,
    a dict of token id -> Logprob(logprob, rank, ...) with the sampled token and the `top`
    best by rank (vLLM, TensorRT-LLM); `text(token_id, logprob)` gives a token's text."""
    if top is None or not out.logprobs:
        return ()
    items = []
    for tid, step in zip(out.token_ids[seen:], out.logprobs[seen:]):
        best = sorted(((t, lp) for t, lp in step.items()
                       if lp.rank is not None and lp.rank <= top), key=lambda x: x[1].rank)
        # Some TensorRT-LLM releases return the top `top` alone, without the sampled token:
        # it ranked below every one of them, so the least of theirs bounds its logprob.
        chosen = step.get(tid) or min(step.values(), key=lambda lp: lp.logprob, default=None)
        if chosen is None:  # nothing reported for this token at all
            continue
        items.append(TokenLogprob(text(tid, chosen), float(chosen.logprob),
                                  tuple((text(t, lp), float(lp.logprob)) for t, lp in best)))
    return tuple(items)


@dataclass(frozen=True)
class Chunk:
    """Text produced since the last chunk; the last chunk has a finish reason."""

    text: str
    completion_tokens: int  # so far
    prompt_tokens: int
    finish_reason: str | None = None  # stop | length
    logprobs: tuple[TokenLogprob, ...] = ()  # the new tokens', where the request asked


class EngineStats(BaseModel):
    """What a replica reports for routing (Ray Serve's record_routing_stats)."""

    model_config = ConfigDict(extra="forbid")

    running: int = 0
    waiting: int = 0
    waiting_prefill_tokens: int = 0
    waiting_output_tokens: int = 0
    decode_tokens_left: int = 0
    running_context_tokens: int = 0
    kv_used_tokens: int = 0
    kv_capacity_tokens: int = 0
    recent_tokens_per_s: float = 0.0
    prefill_load_tokens_per_s: float = 0.0


class Engine(abc.ABC):
    name = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model and prove it decodes; raise on any failure."""

    def health(self, stall_s: float) -> None:
        """Raise EngineFault when the engine is dead, or has had work without moving for
        longer than ``stall_s``. Engines without a worker of their own have nothing to
        check."""

    @abc.abstractmethod
    def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]: ...

    @abc.abstractmethod
    async def cancel(self, request_id: str) -> None: ...

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def count_tokens(self, text: str, rendered_chat: bool = False) -> int: ...

    @abc.abstractmethod
    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        """The token ids ``count_tokens`` counts (BOS included), for the router's prompt
        count and prefix hashes; raises EngineFault where the engine has no tokenizer."""

    @abc.abstractmethod
    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The prompt for `messages` (with `tools` where the template takes them; a
        RequestError naming `tools` where it does not)."""
