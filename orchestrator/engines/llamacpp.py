"""llama.cpp through llama-cpp-python: real on CPU here, with CUDA offload on GPUs.

Every llama call runs on one dedicated thread: calling the model from several threads
drops decode from ~44 to ~24 tok/s on 2 cores (its OpenMP thread teams, ARCHITECTURE.md).
Requests queue FIFO and run one at a time; tokens reach asyncio through a queue.
``logits_all`` stays off: it makes a 512-token prefill 2.4x slower.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from typing import AsyncIterator

from orchestrator.engines import chat
from orchestrator.engines.base import (Chunk, Engine, EngineFault, EngineStats,
                                       GenerateRequest, TokenRate)

_DONE = object()


class LlamaCppEngine(Engine):
    name = "llamacpp"

    def __init__(self, model_path: str, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_gpu_layers: int = 0, chat_template: str | None = None):
        self.model_path, self.n_ctx = model_path, n_ctx
        self.n_threads, self.n_gpu_layers = n_threads, n_gpu_layers
        self.fallback_template = chat_template
        self.llm = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llama")
        self.cancelled: set[str] = set()
        self.lock = threading.Lock()
        self.waiting: collections.OrderedDict[str, GenerateRequest] = collections.OrderedDict()
        self.waiting_prompt_tokens = 0
        self.running: str | None = None
        self.running_left = 0
        self.running_context = 0
        self.rate = TokenRate()

    async def start(self) -> None:
        def load():
            import llama_cpp

            # Prompt processing gets the same threads as decoding: left unset it takes every
            # core of the machine, which a replica holding one CPU does not own.
            self.llm = llama_cpp.Llama(
                model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, n_gpu_layers=self.n_gpu_layers,
                logits_all=False, verbose=False)

        await asyncio.get_running_loop().run_in_executor(self.pool, load)

    # -- text ----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=True, special=True))

    def render_chat(self, messages: list[dict]) -> str:
        template = self.llm.metadata.get("tokenizer.chat_template") or self.fallback_template
        if not template:
            raise EngineFault("the model has no chat template; use /v1/completions")
        # The GGUF's own BOS is added by the tokenizer, so the template's is left empty.
        return chat.render(template, messages)

    # -- generation ----------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        n_prompt = req.prompt_token_count(self, prompt)
        with self.lock:
            self.waiting[req.request_id] = req
            self.waiting_prompt_tokens += n_prompt

        def emit(item):
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work():
            with self.lock:
                self.waiting.pop(req.request_id, None)
                self.waiting_prompt_tokens -= n_prompt
                self.running, self.running_left = req.request_id, req.max_tokens
                self.running_context = n_prompt
            try:
                if req.request_id in self.cancelled:
                    emit(_DONE)
                    return
                stream = self.llm.create_completion(
                    prompt, max_tokens=req.max_tokens, temperature=req.temperature,
                    top_p=req.top_p, stop=list(req.stop) or None, seed=req.seed, stream=True)
                n = 0
                for part in stream:
                    if req.request_id in self.cancelled:
                        stream.close()
                        break
                    choice = part["choices"][0]
                    text, finish = choice.get("text", ""), choice.get("finish_reason")
                    if text:
                        n += 1
                        self.rate.add()
                        with self.lock:
                            self.running_left -= 1
                            self.running_context += 1
                    if text or finish:
                        emit(Chunk(text, n, n_prompt, finish))
                emit(_DONE)
            except Exception as e:  # handed to the caller's coroutine, never lost
                emit(EngineFault(f"llama.cpp failed: {e}"))
            finally:
                with self.lock:
                    self.running = None
                    self.running_left = self.running_context = 0
                self.cancelled.discard(req.request_id)

        future = loop.run_in_executor(self.pool, work)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if not future.done():  # the client went away: stop generating for it
                self.cancelled.add(req.request_id)

    async def cancel(self, request_id: str) -> None:
        self.cancelled.add(request_id)

    def stats(self) -> EngineStats:
        rate = self.rate.per_s()
        with self.lock:
            return EngineStats(
                running=int(self.running is not None), waiting=len(self.waiting),
                waiting_prefill_tokens=self.waiting_prompt_tokens,
                waiting_output_tokens=sum(r.max_tokens for r in self.waiting.values()),
                decode_tokens_left=max(self.running_left, 0),
                running_context_tokens=self.running_context,
                kv_used_tokens=self.running_context, kv_capacity_tokens=self.n_ctx,
                recent_tokens_per_s=rate)

    async def stop(self) -> None:
        def close():
            if self.llm is not None:
                self.llm.close()
                self.llm = None

        await asyncio.get_running_loop().run_in_executor(self.pool, close)
        self.pool.shutdown(wait=False)
