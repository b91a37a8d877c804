"""The simulated engine: a timing model, not a model. It sleeps for the prefill and decode
times the planner's performance model predicts and emits placeholder tokens. For the
simulator's cousins in tests where only timing matters; never used by `make run`."""

from __future__ import annotations

import asyncio
import zlib
from typing import AsyncIterator

from orchestrator.defaults import CHARS_PER_TOKEN
from orchestrator.engines.base import Chunk, Engine, EngineStats, GenerateRequest, TokenRate
from orchestrator.planner.performance import Speeds

PLACEHOLDER = " tok"


class SimulatedEngine(Engine):
    name = "simulated"

    def __init__(self, speeds: Speeds, *, kv_capacity_tokens: int = 8192, max_batch: int = 8,
                 time_scale: float = 1.0,
                 chars_per_token: float = CHARS_PER_TOKEN):
        self.speeds, self.kv_capacity = speeds, kv_capacity_tokens
        self.max_batch, self.time_scale = max_batch, time_scale
        self.chars_per_token = chars_per_token
        self.running: dict[str, list[int]] = {}  # id -> [context, left]
        self.waiting = 0
        self.slots: asyncio.Semaphore | None = None
        self.cancelled: set[str] = set()
        self.rate = TokenRate()  # recent, as the real engines report it

    async def start(self) -> None:
        self.slots = asyncio.Semaphore(self.max_batch)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return max(1, round(len(text) / self.chars_per_token))

    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        """One id per ``chars_per_token`` characters (the last takes the rest), each from
        its characters: equal text prefixes give equal id prefixes, as a real tokenizer's."""
        n, step = self.count_tokens(text), max(1, round(self.chars_per_token))
        pieces = [text[i * step:(i + 1) * step] for i in range(n - 1)] + [text[(n - 1) * step:]]
        return [zlib.crc32(p.encode()) for p in pieces]

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        return "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        n_prompt = req.prompt_token_count(self, prompt)
        self.waiting += 1
        async with self.slots:
            self.waiting -= 1
            self.running[req.request_id] = [n_prompt, req.max_tokens]
            try:
                await asyncio.sleep(n_prompt / self.speeds.prefill_tokens_per_s()
                                    * self.time_scale)
                for i in range(1, req.max_tokens + 1):
                    if req.request_id in self.cancelled:
                        return
                    ctx = sum(c for c, _ in self.running.values()) / len(self.running)
                    step = self.speeds.decode_step_s(len(self.running), ctx)
                    if i > 1:
                        await asyncio.sleep(step * self.time_scale)
                    self.running[req.request_id][0] += 1
                    self.running[req.request_id][1] -= 1
                    self.rate.add()
                    yield Chunk(PLACEHOLDER, i, n_prompt,
                                "length" if i == req.max_tokens else None)
            finally:
                self.running.pop(req.request_id, None)
                self.cancelled.discard(req.request_id)

    async def cancel(self, request_id: str) -> None:
        self.cancelled.add(request_id)

    def stats(self) -> EngineStats:
        ctx = sum(c for c, _ in self.running.values())
        return EngineStats(running=len(self.running), waiting=self.waiting,
                           decode_tokens_left=sum(left for _, left in self.running.values()),
                           running_context_tokens=ctx, kv_used_tokens=ctx,
                           kv_capacity_tokens=self.kv_capacity,
                           recent_tokens_per_s=self.rate.per_s())

    async def stop(self) -> None:
        self.running.clear()
