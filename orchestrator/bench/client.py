"""Measure a live OpenAI-compatible endpoint with the official `openai` client.

Two modes:
- the seed guide's method (docs/sources.md): a fixed prompt length and output length,
  median of N runs, at concurrency C (each run is C requests at once);
- trace replay: the trace's arrival times (scaled) and request sizes, open loop, once per
  routing policy (bench/trace_bench.py).
Each request streams; TTFT is the time to the first chunk with text; TPOT the time from
there to the last chunk over the remaining tokens. Token counts come from the server's
`usage` where it sends one, else from the number of chunks with text.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass


# Common short English words: most tokenizers give one token each with a leading space.
WORDS = ("time year people way day man thing woman life child world school state family "
          "student group country problem hand part place case week company system program "
          "question work government number night point home water room mother area money "
          "story fact month lot right study book eye job word business issue side kind head "
          "house service friend father power hour game line end member law car city name "
          "team minute idea kid body information back parent face others level office door "
          "health person art war history party result change morning reason research girl "
          "guy moment air teacher force education").split()


def make_prompt(words: int, salt: int) -> str:
    """``words`` words whose start differs per ``salt``, so no prefix cache skips prefill."""
    rng = random.Random(salt)
    head = f"Request {salt}: "
    return head + " ".join(rng.choice(WORDS) for _ in range(max(words, 1)))


@dataclass
class Sample:
    ok: bool
    start: float
    first: float | None = None
    end: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    error: str | None = None
    pool: str | None = None  # the x-orchestrator-pool header, where the endpoint sends it

    @property
    def ttft_s(self) -> float:
        return self.first - self.start

    @property
    def tpot_s(self) -> float | None:
        if self.completion_tokens <= 1 or self.first is None:
            return None
        return (self.end - self.first) / (self.completion_tokens - 1)

    @property
    def decode_tok_s(self) -> float | None:
        t = self.tpot_s
        return 1 / t if t else None

    @property
    def e2e_tok_s(self) -> float:
        return self.completion_tokens / (self.end - self.start)


class Client:
    def __init__(self, url: str, model: str | None, api_key: str | None, chat: bool,
                 timeout_s: float):
        from openai import AsyncOpenAI

        base = url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.api = AsyncOpenAI(base_url=base, api_key=api_key or "none", timeout=timeout_s,
                               max_retries=0)
        self.model, self.chat = model, chat

    async def close(self) -> None:
        await self.api.close()

    async def resolve_model(self) -> str:
        if not self.model:
            models = await self.api.models.list()
            if not models.data:
                raise RuntimeError("the endpoint lists no model; pass --model")
            self.model = models.data[0].id
        return self.model

    async def one(self, prompt: str, max_tokens: int,
                  headers: dict[str, str] | None = None) -> Sample:
        s = Sample(ok=False, start=time.perf_counter())
        chunks, finish = 0, None
        try:
            kwargs = dict(model=self.model, max_tokens=max_tokens, stream=True,
                          temperature=0.0, stream_options={"include_usage": True},
                          extra_headers=headers)
            if self.chat:
                raw = await self.api.chat.completions.with_raw_response.create(
                    messages=[{"role": "user", "content": prompt}], **kwargs)
            else:
                raw = await self.api.completions.with_raw_response.create(prompt=prompt,
                                                                          **kwargs)
            s.pool = raw.headers.get("x-orchestrator-pool")
            stream = raw.parse()
            async for chunk in stream:
                now = time.perf_counter()
                if getattr(chunk, "usage", None):
                    s.prompt_tokens = chunk.usage.prompt_tokens
                    s.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices or []:
                    finish = choice.finish_reason or finish
                    text = choice.delta.content if self.chat else choice.text
                    if text:
                        chunks += 1
                        s.first = s.first or now
                        s.end = now
            s.completion_tokens = s.completion_tokens or chunks
            s.ok = s.first is not None and finish is not None
            if s.first is None:
                s.error = "no tokens"
            elif finish is None:
                s.error = "stream ended without a finish_reason (aborted)"
        except Exception as e:  # every failure is a data point, never a crash of the run
            s.error = f"{type(e).__name__}: {getattr(e, 'status_code', '') or e}"[:200]
        s.end = s.end or time.perf_counter()
        return s

    async def count_prompt_tokens(self, prompt: str) -> int | None:
        try:
            if self.chat:
                r = await self.api.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}],
                    max_tokens=1)
            else:
                r = await self.api.completions.create(model=self.model, prompt=prompt,
                                                      max_tokens=1)
            return r.usage.prompt_tokens if r.usage else None
        except Exception:
            return None


async def calibrate_words(client: Client, target_tokens: int) -> tuple[int, int | None]:
    """Words for a prompt of about ``target_tokens`` tokens, from one probe's usage."""
    words = target_tokens
    got = await client.count_prompt_tokens(make_prompt(words, salt=-1))
    if got:
        words = max(1, round(words * target_tokens / got))
        got = await client.count_prompt_tokens(make_prompt(words, salt=-2))
    return words, got


async def seed_method(client: Client, prompt_tokens: int, max_tokens: int, runs: int,
                      concurrency: int, salt0: int = 0) -> tuple[list[list[Sample]], int | None]:
    """``runs`` rounds of ``concurrency`` simultaneous requests."""
    words, measured = await calibrate_words(client, prompt_tokens)
    rounds = []
    for run in range(runs):
        batch = [client.one(make_prompt(words, salt0 + run * concurrency + i), max_tokens)
                 for i in range(concurrency)]
        rounds.append(await asyncio.gather(*batch))
    return rounds, measured
