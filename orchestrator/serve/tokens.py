"""The prompt as the model's tokenizer counts it, for routing.

Before routing a request the ingress asks one live replica for the prompt's token ids
(a chat rendered first with the template generation uses), so the router counts the
prompt exactly and hashes its blocks for prefix affinity (router/prefix.py). Every pool
serves the same model, but pools on different backends may tokenize differently (a GGUF's
vocabulary, a Hugging Face tokenizer): the asked replica is the least busy one among the
pools on the same backend as the first pool (by name) that has a live replica, so equal
prompts always hash alike. A pool with no replica is never asked: a request to a pool at
zero replicas is what makes Serve start one.

When no replica answers within ``timeout_s``, its engine has no tokenizer, or no pool has
a replica, the router falls back to characters / 4 and no block hashes; each fallback
counts in ``orchestrator_tokenize_fallbacks_total{reason}`` and the first of each reason
is logged. A chat template that refuses the messages is the request's 400 here already,
as generation would make it. Ray-free: the ingress hands it ``call(dep, TokenizeRequest)``
(a pool's ``tokenize``), so tests drive it with a fake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from orchestrator.defaults import CHARS_PER_TOKEN
from orchestrator.router.context import ReplicaView
from orchestrator.router.prefix import BLOCK_TOKENS, hash_blocks
from orchestrator.serve.contract import TokenizeRequest
from orchestrator.serve.dispatch import request_error
from orchestrator.serve.openai_api import ApiError

log = logging.getLogger("ray.serve")
TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Counted:
    tokens: int
    block_hashes: tuple[int, ...] = ()
    exact: bool = False  # counted by the model's tokenizer, not estimated


def estimate(prompt: str | None, messages: list[dict] | None) -> int:
    text = prompt if messages is None else " ".join(str(m.get("content") or "")
                                                    for m in messages)
    return max(1, round(len(text or "") / CHARS_PER_TOKEN))


class PromptCounter:
    def __init__(self, call: Callable, metrics: dict, block_tokens: int = BLOCK_TOKENS,
                 timeout_s: float = TIMEOUT_S, clock=time.perf_counter,
                 tokenizer_of: dict[str, str] | None = None):
        self.call, self.m = call, metrics
        self.tokenizer_of = tokenizer_of or {}  # pool -> its backend: equal ones agree
        self.block_tokens, self.timeout_s, self.clock = block_tokens, timeout_s, clock
        self.logged: set[str] = set()

    def target(self, views: list[ReplicaView]) -> ReplicaView | None:
        """The least busy replica among the pools that tokenize as the first pool (by
        name) with a replica does."""
        if not views:
            return None
        first = min(v.pool for v in views)
        kind = self.tokenizer_of.get(first, first)
        same = [v for v in views if self.tokenizer_of.get(v.pool, v.pool) == kind]
        return min(same, key=lambda v: (v.outstanding, v.id))

    async def count(self, views: list[ReplicaView], prompt: str | None,
                    messages: list[dict] | None, tools: list[dict] | None = None) -> Counted:
        target = self.target(views)
        if target is None:
            return self._fallback("no_replica", prompt, messages)
        t0 = self.clock()
        response = self.call(target.pool, TokenizeRequest(prompt, messages, target.id, tools))
        try:
            ids = await asyncio.wait_for(_awaited(response), self.timeout_s)
        except asyncio.TimeoutError:
            _cancel(response)
            return self._fallback("timeout", prompt, messages, target.id)
        except Exception as e:
            bad = request_error(e)
            if bad is not None:  # the template refused: generation would too
                self.m["errors"].labels("-", "bad_request").inc()
                raise ApiError(400, bad.message, "invalid_request_error", bad.param,
                               bad.code) from None
            return self._fallback("error", prompt, messages, f"{target.id}: {e!r}"[:300])
        self.m["tokenize"].observe(self.clock() - t0)
        ids = list(ids)
        return Counted(max(len(ids), 1), hash_blocks(ids, self.block_tokens), True)

    def _fallback(self, reason: str, prompt, messages, detail: str = "") -> Counted:
        self.m["tokenize_fallbacks"].labels(reason).inc()
        if reason not in self.logged:
            self.logged.add(reason)
            log.warning("routing on characters / %g: no token ids from a replica (%s%s); "
                        "logged once per reason, counted in "
                        "orchestrator_tokenize_fallbacks_total", CHARS_PER_TOKEN, reason,
                        f", {detail}" if detail else "")
        return Counted(estimate(prompt, messages))


async def _awaited(response):
    return await response


def _cancel(response) -> None:
    try:
        response.cancel()
    except Exception:  # already done or gone
        pass
