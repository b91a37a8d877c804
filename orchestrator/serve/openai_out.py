"""OpenAI's response shapes: whole answers, stream chunks, logprobs and tool calls."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from orchestrator.engines.base import TokenLogprob


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def _bytes(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="replace"))


def logprobs_json(chat: bool, items: list[TokenLogprob], offset: int = 0) -> dict | None:
    """Chat: {"content": [{token, logprob, bytes, top_logprobs}]}. Completions (OpenAI's
    legacy shape): tokens, token_logprobs, top_logprobs as {token: logprob}, and each
    token's character offset in the choice's text (`offset`: where this part begins)."""
    if chat:
        return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.token),
                             "top_logprobs": [{"token": a, "logprob": lp, "bytes": _bytes(a)}
                                              for a, lp in t.top]} for t in items],
                "refusal": None}
    offsets = []
    for t in items:
        offsets.append(offset)
        offset += len(t.token)
    return {"tokens": [t.token for t in items], "token_logprobs": [t.logprob for t in items],
            "top_logprobs": [dict(t.top) for t in items], "text_offset": offsets}


@dataclass
class Choice:
    """One choice of an answer as it is collected: index, text, logprobs, finish."""

    index: int
    text: str = ""
    logprobs: list[TokenLogprob] | None = None  # None: the request asked for none
    finish: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: list[dict] = field(default_factory=list)

    def as_json(self, chat: bool) -> dict:
        lp = None if self.logprobs is None else logprobs_json(chat, self.logprobs)
        finish = "tool_calls" if self.tool_calls else (self.finish or "stop")
        if chat:
            message = {"role": "assistant", "content": None if self.tool_calls else self.text}
            if self.tool_calls:
                message["tool_calls"] = self.tool_calls
            return {"index": self.index, "message": message, "logprobs": lp,
                    "finish_reason": finish}
        return {"index": self.index, "text": self.text, "logprobs": lp,
                "finish_reason": finish}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def full_response(chat: bool, rid: str, model: str, choices: list[Choice],
                  used: dict) -> dict:
    return {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model,
            "choices": [c.as_json(chat) for c in sorted(choices, key=lambda c: c.index)],
            "usage": used}


def chunk(chat: bool, rid: str, model: str, index: int, text: str | None,
          finish: str | None, first: bool = False, logprobs: dict | None = None,
          tool_calls: list[dict] | None = None) -> dict:
    if chat:
        delta = {"content": text} if text else {}
        if first:
            delta = {"role": "assistant", "content": text or ""}
        if tool_calls:
            delta = {**delta, "content": None, "tool_calls": [
                {"index": i, **call} for i, call in enumerate(tool_calls)]}
        choice = {"index": index, "delta": delta, "logprobs": logprobs,
                  "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "logprobs": logprobs,
                  "finish_reason": finish}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice]}


def usage_chunk(chat: bool, rid: str, model: str, used: dict) -> dict:
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [], "usage": used}


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
