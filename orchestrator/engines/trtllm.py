"""TensorRT-LLM's LLM API on the node type's built artifact (an engine directory, or the
PyTorch backend's checkpoint record). Imported lazily: the `trtllm` extra is needed only
where a plan puts TensorRT-LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

from orchestrator.errors import MissingExtraError
from orchestrator.engines.base import (Chunk, Engine, EngineStats, GenerateRequest,
                                       template_error)
from orchestrator.engines.chat import encode_once


class TrtllmEngine(Engine):
    name = "trtllm"

    def __init__(self, artifact_dir: str, *, tensor_parallel_size: int = 1):
        self.artifact_dir = Path(artifact_dir)
        self.tp = tensor_parallel_size
        self.llm = None
        self.running: dict[str, int] = {}  # request id -> tokens left to decode
        self.waiting: dict[str, tuple[int, int]] = {}  # until its first output
        self.results: dict[str, object] = {}  # request id -> its GenerationResult

    async def start(self) -> None:
        try:
            import tensorrt_llm  # noqa: F401
        except ImportError:
            raise MissingExtraError("tensorrt-llm", "trtllm", "this replica's node") from None
        engine = self.artifact_dir / "engine"
        if engine.is_dir():
            from tensorrt_llm._tensorrt_engine import LLM

            self.llm = LLM(model=str(engine), tensor_parallel_size=self.tp)
        else:
            from tensorrt_llm import LLM

            record = json.loads((self.artifact_dir / "pytorch_backend.json").read_text())
            self.llm = LLM(model=record["checkpoint"],
                           tensor_parallel_size=record["tensor_parallel_size"],
                           enable_chunked_prefill=record.get("enable_chunked_context", True))

    def encode(self, text: str, rendered_chat: bool = False) -> list[int]:
        return encode_once(self.llm.tokenizer, text, rendered_chat)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return len(self.encode(text, rendered_chat))

    def render_chat(self, messages: list[dict]) -> str:
        try:
            return self.llm.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True)
        except Exception as e:
            raise template_error(e) from None

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        from tensorrt_llm import SamplingParams

        chat = req.prompt is None or req.rendered_chat
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        params = SamplingParams(max_tokens=req.max_tokens, temperature=req.temperature,
                                top_p=req.top_p, stop=list(req.stop) or None, seed=req.seed)
        # generate_async takes token ids as well as text: a chat prompt goes in encoded
        # with exactly one BOS (engines/chat.encode_once)
        inputs = self.encode(prompt, True) if chat else prompt
        n_prompt = len(inputs) if chat else req.prompt_token_count(self, prompt)
        self.waiting[req.request_id] = (n_prompt, req.max_tokens)
        result = self.llm.generate_async(inputs, params, streaming=True)
        self.results[req.request_id] = result
        finished = False
        try:
            async for out in result:
                self.waiting.pop(req.request_id, None)
                o = out.outputs[0]
                self.running[req.request_id] = req.max_tokens - len(o.token_ids)
                yield Chunk(o.text_diff, len(o.token_ids), n_prompt, o.finish_reason)
            finished = True
        finally:
            self.waiting.pop(req.request_id, None)
            self.running.pop(req.request_id, None)
            self.results.pop(req.request_id, None)
            if not finished:  # the client left: stop decoding for it
                result.abort()

    async def cancel(self, request_id: str) -> None:
        result = self.results.get(request_id)
        if result is not None:
            result.abort()

    def stats(self) -> EngineStats:
        return EngineStats(running=len(self.running), waiting=len(self.waiting),
                           waiting_prefill_tokens=sum(p for p, _ in self.waiting.values()),
                           waiting_output_tokens=sum(m for _, m in self.waiting.values()),
                           decode_tokens_left=sum(self.running.values()))

    async def stop(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
