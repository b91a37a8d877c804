"""TensorRT-LLM: an engine compiled on a node of each node type (engines are specific to
the GPU architecture and the TensorRT-LLM version) or, where the installed TensorRT-LLM has
no engine path, a record of the (pre-)quantized checkpoint its PyTorch backend loads; served
through its LLM API. Imported lazily: the `trtllm` extra is needed only on nodes whose plan
puts TensorRT-LLM there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

from orchestrator.backends.base import (Backend, BuildSpec, Calibration, need_source,
                                        write_json)
from orchestrator.engines.base import (Chunk, Engine, EngineStats, GenerateRequest,
                                       ranked_logprobs, template_error)
from orchestrator.engines.chat import encode_once
from orchestrator.engines.features import JSON_SCHEMA, LOGIT_BIAS, LOGPROBS, PENALTIES
from orchestrator.errors import BuildFailed, MissingExtraError

ENGINE_DIR = "engine"  # the artifact: a compiled engine directory, or the record below
PYTORCH_RECORD = "pytorch_backend.json"
RUNTIME_RECORD = "runtime.json"  # beside an engine: what LLM(...) takes at start-up
RUNTIME_KEYS = ("enable_chunked_context", "kv_cache_free_gpu_memory_fraction")
# TensorRT-LLM's quantization algorithm per precision (tensorrt_llm QuantAlgo names).
QUANT_ALGO = {"f16": None, "bf16": None, "fp8_w8a8": "FP8", "int8_sq": "W8A8_SQ_PER_CHANNEL",
              "awq_int4": "W4A16_AWQ", "gptq_int4": "W4A16_GPTQ"}
# the checkpoint a build starts from where the spec names none (else the plan's choice)
SOURCE_KIND = {"awq_int4": "modelopt_w4a16", "gptq_int4": "gptq"}  # else F16/BF16 "hf"
# ModelOpt writes this beside a quantized checkpoint; TensorRT-LLM's loaders read it
MODELOPT_CONFIG = "hf_quant_config.json"
GUIDED_BACKEND = "xgrammar"  # what compiles a response_format's JSON schema
# vLLM's name for the method of a checkpoint TensorRT-LLM refuses, for the refusal's advice
VLLM_LOADS = {"awq": "awq_marlin", "gptq": "gptq_marlin"}


def checkpoint_refusal(source: str, quant_algo: str | None, engine_path: bool) -> str | None:
    """Why TensorRT-LLM cannot make the planned engine from ``source``, or None.

    Its loaders take ModelOpt-quantized checkpoints (hf_quant_config.json) and F16/BF16
    ones; an AutoAWQ or GPTQ checkpoint's quantization_config makes them raise
    NotImplementedError("Unsupported quantization_config"). The engine path quantizes an
    F16 checkpoint itself (ModelOpt, during the build); the PyTorch backend does not, so
    there a planned quantization needs a checkpoint quantized ahead."""
    root = Path(source)
    if (root / MODELOPT_CONFIG).is_file():
        return None
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    method = str((config.get("quantization_config") or {}).get("quant_method", "")).lower()
    if method in VLLM_LOADS:
        return (f"{source} is an {method.upper()} checkpoint (config.json quant_method "
                f"{method!r}); TensorRT-LLM loads ModelOpt-quantized ones "
                f"({MODELOPT_CONFIG}) and refuses this one. vLLM serves it "
                f"(quantization {VLLM_LOADS[method]}): list vllm in the node type's backends; "
                "or quantize the F16 checkpoint with ModelOpt (W4A16 AWQ) and point "
                "artifacts.sources at the result")
    if quant_algo and not engine_path:
        return (f"the installed TensorRT-LLM has only its PyTorch backend, which does not "
                f"quantize at load time, and {source} has no {MODELOPT_CONFIG}: the plan's "
                f"{quant_algo} would serve F16 weights at twice the planned memory. Quantize "
                "the checkpoint with ModelOpt and point artifacts.sources at it")
    return None


def sampling_kwargs(req: GenerateRequest) -> dict:
    """SamplingParams arguments. Greedy is top_k 1 with no top_p: what every LLM API
    release treats as greedy (older ones ignore temperature 0 and sample at top_p 1)."""
    kw = dict(max_tokens=req.max_tokens, stop=list(req.stop) or None, seed=req.seed)
    if req.presence_penalty or req.frequency_penalty:
        kw |= {"presence_penalty": req.presence_penalty,
               "frequency_penalty": req.frequency_penalty}
    if req.logprobs is not None:
        kw["logprobs"] = req.logprobs
    if req.json_schema is not None:  # LLM(guided_decoding_backend="xgrammar") compiles it
        from tensorrt_llm.sampling_params import GuidedDecodingParams

        kw["guided_decoding"] = GuidedDecodingParams(json=json.loads(req.json_schema))
    if req.temperature == 0:
        return {**kw, "top_k": 1, "top_p": None, "temperature": None}
    return {**kw, "temperature": req.temperature, "top_p": req.top_p}


def runtime_kwargs(record: dict) -> dict:
    """The plan's batch and length limits, chunked context and KV cache for ``LLM(...)``:
    the engine path's build has them in its engine; the PyTorch backend takes them here."""
    return {"max_batch_size": record["max_batch_size"],
            "max_num_tokens": record["max_num_tokens"],
            "max_seq_len": record["max_seq_len"],
            "enable_chunked_prefill": record.get("enable_chunked_context", True),
            "guided_decoding_backend": GUIDED_BACKEND}


def kv_cache_kwargs(record: dict) -> dict:
    """KvCacheConfig arguments: the plan's share of GPU memory, and fp8 where planned."""
    kw = {"free_gpu_memory_fraction": record.get("kv_cache_free_gpu_memory_fraction", 0.9)}
    if record.get("kv_cache_quant_algo") == "FP8":
        kw["dtype"] = "fp8"
    return kw


class Trtllm(Backend):
    id, display, extra, dists = "trtllm", "TensorRT-LLM", "trtllm", ("tensorrt-llm",)
    # FP16/BF16, INT8 SmoothQuant and W4A16 AWQ/GPTQ on Ampere (sm80/86), FP8 from sm89
    gpu_support = {"f16": 80, "bf16": 80, "int8_sq": 80, "awq_int4": 80, "gptq_int4": 80,
                   "fp8_w8a8": 89}
    # engines preallocate less than vLLM's CUDA graphs
    parallelism, overhead_gib_per_gpu = "tensor", 1.0
    max_batch, chunked_prefill = 256, True
    calibration = (
        Calibration("a100-80g-sxm", 4, "tensor", "llama-3.1-70b", "f16", 2048 / 0.377,
                    "TensorRT-LLM v0.6.1 docs/source/performance.md (TTFT 377 ms at 2048 "
                    "tokens in)", kind="prefill", prompt_tokens=2048, output_tokens=0),
    )
    calibration_from = "vllm"
    # its loaders take F16/BF16 and ModelOpt-quantized checkpoints, and refuse AutoAWQ and
    # GPTQ ones (checkpoint_refusal); the engine build quantizes F16 with ModelOpt
    loads = {"f16": ("hf",), "bf16": ("hf",), "fp8_w8a8": ("modelopt_fp8",),
             "awq_int4": ("modelopt_w4a16",)}
    quantizes_from = {"fp8_w8a8": "hf", "int8_sq": "hf", "awq_int4": "hf"}
    features = frozenset({PENALTIES, LOGPROBS, JSON_SCHEMA})  # JSON through xgrammar
    feature_notes = {LOGIT_BIAS: "TensorRT-LLM's SamplingParams has no logit_bias (only "
                                 "per-request logits processors)"}
    notes = ("engines are specific to the GPU architecture and TensorRT-LLM version; "
             "no published single-stream decode figure, so decode borrows vLLM's fit")
    engine_class = "orchestrator.backends.trtllm:TrtllmEngine"

    def build_params(self, n, plan, node, sources):
        """Engine limits from the plan's KV budget: a sequence can be as long as the KV room
        allows (up to the model's limit); the batch is what the KV room holds of typical
        ones."""
        c = n.choice
        max_seq = c.memory.max_context
        return c.checkpoint or SOURCE_KIND.get(c.precision, "hf"), {
            "dtype": "bfloat16" if c.precision == "bf16" else "float16",
            "quant_algo": QUANT_ALGO[c.precision],
            "kv_cache_quant_algo": "FP8" if c.kv_cache_dtype == "fp8" else None,
            "max_batch_size": max(1, min(c.perf.batch, 256)),
            "max_input_len": max(1, max_seq - 1),
            "max_seq_len": max_seq,
            "max_num_tokens": 8192,
            "enable_chunked_context": True,  # the simulator and router assume it
            "kv_cache_free_gpu_memory_fraction": 0.9,
            # Decided on the build node, whose installed TensorRT-LLM is the one that
            # counts; the manifest's notes record which path was taken.
            "build_path": "engine (tensorrt_llm._tensorrt_engine.LLM + BuildConfig) where "
                          "the installed TensorRT-LLM has it, else the PyTorch backend on "
                          "the checkpoint (newer releases dropped the engine path)",
        }

    def describe(self, spec):
        p = spec.params
        return (f"engine {p['quant_algo'] or p['dtype']}, TP {spec.tp}, batch "
                f"{p['max_batch_size']}, input {p['max_input_len']}, seq {p['max_seq_len']}")

    def build(self, spec: BuildSpec, out: Path, cache: Path | None = None) -> list[str]:
        try:
            import tensorrt_llm  # noqa: F401
        except ImportError:
            raise MissingExtraError("tensorrt-llm", "trtllm") from None
        need_source(spec)
        try:
            from tensorrt_llm._tensorrt_engine import LLM as EngineLLM
        except ImportError:
            EngineLLM = None
        refusal = checkpoint_refusal(spec.source, spec.params["quant_algo"],
                                     engine_path=EngineLLM is not None)
        if refusal:
            raise BuildFailed(f"{spec.node_type}: {refusal}")
        if EngineLLM is None:
            # Newer releases dropped the engine path: the PyTorch backend loads a checkpoint
            # at start-up, so the artifact records which (pre-)quantized checkpoint and
            # settings.
            write_json(out / PYTORCH_RECORD, {"checkpoint": spec.source,
                                              "tensor_parallel_size": spec.tp,
                                              **spec.params})
            return ["PyTorch backend: the installed TensorRT-LLM has no engine-build path "
                    "(tensorrt_llm._tensorrt_engine); the checkpoint loads at start-up"]
        from tensorrt_llm import BuildConfig
        from tensorrt_llm.llmapi import QuantAlgo, QuantConfig

        p = spec.params
        quant = QuantConfig(
            quant_algo=QuantAlgo[p["quant_algo"]] if p["quant_algo"] else None,
            kv_cache_quant_algo=QuantAlgo[p["kv_cache_quant_algo"]]
            if p["kv_cache_quant_algo"] else None)
        build_config = BuildConfig(max_batch_size=p["max_batch_size"],
                                   max_input_len=p["max_input_len"],
                                   max_seq_len=p["max_seq_len"],
                                   max_num_tokens=p["max_num_tokens"])
        llm = EngineLLM(model=spec.source, tensor_parallel_size=spec.tp, dtype=p["dtype"],
                        quant_config=quant, build_config=build_config)
        try:
            llm.save(str(out / ENGINE_DIR))
        finally:
            llm.shutdown()
        # the runtime settings LLM(...) takes at start-up beside the engine (the PyTorch
        # record above has every setting)
        write_json(out / RUNTIME_RECORD, {k: p[k] for k in RUNTIME_KEYS})
        return ["engine path: tensorrt_llm._tensorrt_engine.LLM with BuildConfig"]

    def engine_args(self, n, model, artifact):
        return {"artifact_dir": str(artifact), "tensor_parallel_size": n.choice.gpus_per_replica}


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
        from tensorrt_llm.llmapi import KvCacheConfig

        engine = self.artifact_dir / ENGINE_DIR
        runtime = self.artifact_dir / RUNTIME_RECORD
        if engine.is_dir():
            from tensorrt_llm._tensorrt_engine import LLM

            # limits and the cache type are in the engine; chunked context and the cache's
            # memory share are runtime settings (artifacts built before runtime.json: none)
            rec = json.loads(runtime.read_text()) if runtime.is_file() else {}
            kw = ({"enable_chunked_prefill": rec.get("enable_chunked_context", True),
                   "kv_cache_config": KvCacheConfig(**kv_cache_kwargs(rec))}
                  if rec else {}) | {"guided_decoding_backend": GUIDED_BACKEND}
            self.llm = LLM(model=str(engine), tensor_parallel_size=self.tp, **kw)
        else:
            from tensorrt_llm import LLM

            record = json.loads((self.artifact_dir / PYTORCH_RECORD).read_text())
            self.llm = LLM(model=record["checkpoint"],
                           tensor_parallel_size=record["tensor_parallel_size"],
                           kv_cache_config=KvCacheConfig(**kv_cache_kwargs(record)),
                           **runtime_kwargs(record))

    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        return encode_once(self.llm.tokenizer, text, rendered_chat)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return len(self.tokenize(text, rendered_chat))

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        from orchestrator.engines import chat

        chat.refuse_tools(getattr(self.llm.tokenizer, "chat_template", None), tools)
        try:
            return self.llm.tokenizer.apply_chat_template(messages, tools=tools or None,
                                                          tokenize=False,
                                                          add_generation_prompt=True)
        except Exception as e:
            raise template_error(e) from None

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        from tensorrt_llm import SamplingParams

        chat = req.prompt is None or req.rendered_chat
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        params = SamplingParams(**sampling_kwargs(req))
        # generate_async takes token ids as well as text: a chat prompt goes in encoded
        # with exactly one BOS (engines/chat.encode_once)
        inputs = self.tokenize(prompt, True) if chat else prompt
        n_prompt = len(inputs) if chat else req.prompt_token_count(self, prompt)
        self.waiting[req.request_id] = (n_prompt, req.max_tokens)
        result = self.llm.generate_async(inputs, params, streaming=True)
        self.results[req.request_id] = result
        finished, seen = False, 0
        try:
            async for out in result:
                self.waiting.pop(req.request_id, None)
                o = out.outputs[0]
                self.running[req.request_id] = req.max_tokens - len(o.token_ids)
                probs = ranked_logprobs(o, seen, req.logprobs,
                                        lambda t, _: self.llm.tokenizer.decode([t]))
                seen = len(o.token_ids)
                yield Chunk(o.text_diff, len(o.token_ids), n_prompt, o.finish_reason,
                            logprobs=probs)
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
