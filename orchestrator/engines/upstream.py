"""An engine that fronts an OpenAI-compatible server over HTTP: llama.cpp's llama-server
(which a replica starts itself, backends/llamaserver.py) or any upstream a node already runs
or a spec's command starts (Ollama, TabbyAPI for ExLlamaV2, vLLM's or TensorRT-LLM's own
servers; backends/upstream.py).

At most `max_batch` requests are in the upstream at once; the rest wait here, in order, so
the router sees this replica's real queue and a client that leaves while waiting costs the
upstream nothing. A client that leaves mid-stream closes its connection, which is how
llama-server (and vLLM's server) learn to stop decoding for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator

from orchestrator.defaults import CHARS_PER_TOKEN
from orchestrator.engines import chat
from orchestrator.engines.base import (Chunk, Engine, EngineFault, EngineStats,
                                       GenerateRequest, Progress, RequestError, TokenLogprob,
                                       TokenRate)

log = logging.getLogger("ray.serve")


@dataclass
class _Live:
    prompt_tokens: int
    max_tokens: int
    decoded: int = 0
    started: bool = False  # holds one of the upstream's slots
    sent: bool = False  # the upstream may be working on it (sent, and not answered)
    response: object | None = None  # the HTTP response, closed on cancel


class UpstreamEngine(Engine):
    name = "openai-compatible"

    def __init__(self, base_url: str, *, served_model: str, max_batch: int = 1,
                 context_tokens: int = 4096, tokenizer_gguf: str | None = None,
                 chat_template: str | None = None, api_key: str | None = None,
                 start_timeout_s: float = 600.0, extra_body: dict | None = None):
        self.base_url = base_url.rstrip("/")
        self.served_model, self.max_batch = served_model, max(1, max_batch)
        self.context_tokens = context_tokens
        self.tokenizer_gguf, self.fallback_template = tokenizer_gguf, chat_template
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.start_timeout_s, self.extra_body = start_timeout_s, dict(extra_body or {})
        self.vocab = None  # llama-cpp-python, vocabulary only
        self.session = None
        self.slots: asyncio.Semaphore | None = None
        self.live: dict[str, _Live] = {}
        self.orphans = 0  # abandoned requests the upstream may still be working on
        self.rate, self.progress = TokenRate(), Progress()

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        import aiohttp

        self.slots = asyncio.Semaphore(self.max_batch)
        # No overall timeout: a long answer streams for minutes; connecting must be quick.
        # One connection per request (force_close): closing it is how a request is
        # cancelled, and llama-server ends a stream by closing its side anyway.
        self.session = aiohttp.ClientSession(
            headers=self.headers, connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        if self.tokenizer_gguf:
            await asyncio.to_thread(self._load_vocab)
        await self.wait_ready()
        # One real decode before the replica says it is ready (as every engine here does).
        async for _ in self.generate(GenerateRequest("warm-up", prompt="Hello", max_tokens=1,
                                                     temperature=0.0)):
            pass
        self.progress.mark()

    def _load_vocab(self) -> None:
        import llama_cpp

        self.vocab = llama_cpp.Llama(model_path=self.tokenizer_gguf, vocab_only=True,
                                     verbose=False)

    def alive(self) -> str | None:
        """Why the upstream cannot serve (its process died), or None."""
        return None

    async def wait_ready(self) -> None:
        """Until the upstream answers its model list (llama-server: /health says ok)."""
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if (why := self.alive()) is not None:
                raise EngineFault(why)
            try:
                async with self.session.get(self.ready_url()) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except Exception as e:  # not listening yet
                last = type(e).__name__
            await asyncio.sleep(0.2)
        raise EngineFault(f"upstream {self.base_url} not ready after "
                          f"{self.start_timeout_s:.0f} s ({last})")

    def ready_url(self) -> str:
        return f"{self.base_url}/v1/models"

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.vocab is not None:
            self.vocab.close()
            self.vocab = None

    def health(self, stall_s: float) -> None:
        if (why := self.alive()) is not None:
            raise EngineFault(why)
        busy = any(v.started for v in self.live.values())
        stalled = self.progress.stalled_s(busy)
        if stalled > stall_s:
            raise EngineFault(f"upstream has had work and sent nothing for {stalled:.0f} s "
                              f"(bound {stall_s:.0f} s)")

    # -- text ----------------------------------------------------------------------------
    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        # A GGUF's tokenizer counts prompts where the upstream has no way to: without one a
        # prompt is counted at CHARS_PER_TOKEN, low, so the context check errs on refusing
        # late (the upstream's own 400) rather than refusing a prompt that fits.
        if self.vocab is None:
            return int(len(text) / CHARS_PER_TOKEN) + 1
        return len(self.tokenize(text, rendered_chat))

    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        if self.vocab is None:
            raise EngineFault(f"no tokenizer for upstream {self.base_url} (no GGUF given)")
        return self.vocab.tokenize(text.encode(), add_bos=True, special=True)

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        template = (self.vocab.metadata.get("tokenizer.chat_template")
                    if self.vocab is not None else None) or self.fallback_template
        # the upstream adds the BOS when it tokenizes, so the template's stays empty
        return chat.render_or_refuse(template, messages, tools=tools)

    # -- generation ----------------------------------------------------------------------
    def body(self, req: GenerateRequest, prompt: str) -> dict:
        body = {"model": self.served_model, "prompt": prompt, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "top_p": req.top_p, "stream": True,
                "stream_options": {"include_usage": True}, **self.extra_body}
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if req.presence_penalty or req.frequency_penalty:
            body |= {"presence_penalty": req.presence_penalty,
                     "frequency_penalty": req.frequency_penalty}
        if req.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in req.logit_bias}
        if req.logprobs is not None:  # at least one: 0 asks llama-server for none at all
            body["logprobs"] = max(req.logprobs, 1)
        return body

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        rid = req.request_id
        live = self.live[rid] = _Live(req.prompt_token_count(self, prompt), req.max_tokens)
        finished = False
        try:
            await self.slots.acquire()
            live.started = True
            self.progress.mark()
            async for c in self._stream(req, prompt, live):
                yield c
            finished = True
        finally:
            self.live.pop(rid, None)
            if live.response is not None:
                live.response.close()  # the upstream sees the connection go and stops
            if live.started:
                if finished or not live.sent:
                    self.slots.release()
                else:  # it may still hold its slot there: count it until it is let go
                    self.orphans += 1
                    asyncio.get_running_loop().create_task(self._release_when_let_go())
            self.progress.mark()

    async def _release_when_let_go(self) -> None:
        since = time.monotonic()
        try:
            while time.monotonic() - since < self.orphan_wait_s and not self.let_go(since):
                await asyncio.sleep(0.1)
        finally:
            self.orphans -= 1
            self.slots.release()

    # A plain OpenAI server says nothing of its slots: a short grace for it to see the
    # closed connection (llama-server polls its sockets every second).
    orphan_wait_s = 1.5

    def let_go(self, since: float) -> bool:
        """Whether the upstream, as seen after `since`, no longer works on more requests
        than this replica streams from it."""
        return False

    async def _stream(self, req: GenerateRequest, prompt: str, live: _Live
                      ) -> AsyncIterator[Chunk]:
        import aiohttp

        # Sent from here on: a client that leaves before the answer's headers (llama-server
        # sends them with the first token) leaves a task there that is stopped only later.
        live.sent = True
        try:
            resp = await self.session.post(f"{self.base_url}/v1/completions",
                                           json=self.body(req, prompt))
        except aiohttp.ClientError as e:
            live.sent = False
            raise EngineFault(f"upstream unreachable: {type(e).__name__}") from None
        live.response = resp
        if resp.status != 200:
            text = (await resp.text())[:500]
            resp.close()
            live.sent = False  # answered: nothing of it runs there
            if 400 <= resp.status < 500 and resp.status != 429:
                raise RequestError(f"the engine refused the request: {_message(text)}")
            raise EngineFault(f"upstream answered HTTP {resp.status}: {_message(text)}")
        n, final, usage = 0, None, None
        try:
            async for raw in resp.content:
                line = raw.strip()
                if line.startswith(b"error:"):  # llama-server's SSE event for a failed task
                    raise _event_error({"error": _loads(line[6:])})
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event.get("error"):
                    raise _event_error(event)
                usage = event.get("usage") or usage
                for choice in event.get("choices") or ():
                    text, finish = choice.get("text") or "", choice.get("finish_reason")
                    probs = token_logprobs(choice.get("logprobs"), req.logprobs)
                    if text:
                        n += 1
                        live.decoded = n
                        self.rate.add()
                        self.progress.mark()
                    if finish:  # held back until the usage that may follow it
                        final = (text, finish, probs)
                    elif text or probs:
                        yield Chunk(text, n, live.prompt_tokens, logprobs=probs)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise EngineFault(f"upstream stream broke: {type(e).__name__}") from None
        if final is None:
            raise EngineFault("upstream stream ended without a finish reason")
        # usage counts a token whose text was empty (part of a UTF-8 character) too
        # (servers that send the last token with the finish send its logprobs there too)
        yield Chunk(final[0], int((usage or {}).get("completion_tokens", n)),
                    int((usage or {}).get("prompt_tokens", live.prompt_tokens)), final[1],
                    logprobs=final[2])

    async def cancel(self, request_id: str) -> None:
        live = self.live.get(request_id)
        if live is not None and live.response is not None:
            live.response.close()

    def stats(self) -> EngineStats:
        live = list(self.live.values())
        running = [v for v in live if v.started and v.decoded > 0]
        waiting = [v for v in live if not (v.started and v.decoded > 0)]
        used = sum(v.prompt_tokens + v.decoded for v in live if v.started)
        return EngineStats(
            running=len(running) + self.orphans, waiting=len(waiting),
            waiting_prefill_tokens=sum(v.prompt_tokens for v in waiting),
            waiting_output_tokens=sum(v.max_tokens for v in waiting),
            decode_tokens_left=sum(max(v.max_tokens - v.decoded, 0) for v in running),
            running_context_tokens=sum(v.prompt_tokens + v.decoded for v in running),
            kv_used_tokens=used, kv_capacity_tokens=self.context_tokens * self.max_batch,
            recent_tokens_per_s=self.rate.per_s())


def token_logprobs(raw, top: int | None) -> tuple[TokenLogprob, ...]:
    """A streamed choice's logprobs, in either shape an upstream sends: llama-server's
    ({"content": [{"token", "logprob", "top_logprobs": [...]}]}) or OpenAI's legacy
    completions shape ({"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]}),
    each token's alternatives cut to the `top` the request asked for."""
    if top is None or not isinstance(raw, dict):
        return ()
    if isinstance(raw.get("content"), list):
        return tuple(TokenLogprob(e["token"], float(e["logprob"]), tuple(
            (a["token"], float(a["logprob"])) for a in (e.get("top_logprobs") or ())[:top]))
            for e in raw["content"])
    tops = raw.get("top_logprobs") or [None] * len(raw.get("tokens") or ())
    # a None logprob (an echoed prompt's first token) has no number JSON can carry: left out
    return tuple(TokenLogprob(t, float(lp), tuple(
        sorted((alt or {}).items(), key=lambda kv: -kv[1])[:top]))
        for t, lp, alt in zip(raw.get("tokens") or (), raw.get("token_logprobs") or (), tops)
        if lp is not None)


def _event_error(event: dict) -> Exception:
    """An error sent inside a stream that had begun: the request's fault where the upstream
    says so (llama-server: a prompt over its context), else the engine's."""
    err = event["error"] if isinstance(event["error"], dict) else {"message": event["error"]}
    said = str(err.get("message", err))[:300]
    if err.get("code") == 400 or err.get("type") == "invalid_request_error":
        return RequestError(f"the engine refused the request: {said}")
    return EngineFault(f"upstream error: {said}")


def _loads(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _message(text: str) -> str:
    """The error message inside an OpenAI-shaped error body, else the body itself."""
    try:
        err = json.loads(text).get("error")
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return text[:300]
