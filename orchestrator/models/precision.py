"""Precision formats: how many bytes a weight takes and what quality it costs.

Sizes: a published checkpoint size wins where the model catalog has one; else
GGUF types use the effective bits per weight of the published Llama 3.1 70B files (file
size x 8 / parameter count, embeddings included), and GPU formats quantize the transformer
blocks and keep the embedding and output matrices at 16 bits, as their checkpoints do.
Quality: a rank (higher is better) that the planner's objectives and the router's precision
floor compare; formats of the same bit class share a rank because no source here orders
them. The perplexity figures are Llama 3 70B's. Sources of every figure: docs/sources.md,
"Checkpoint sizes and quality".
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import UnknownNameError
from orchestrator.models.catalog import ModelArch

_70B_PARAMS = 70.6e9


def _bpw_70b(gb: float) -> float:
    """Effective bits per weight of a published 70B file (arithmetic on its size)."""
    return gb * 1e9 * 8 / _70B_PARAMS


@dataclass(frozen=True)
class Precision:
    id: str
    display: str
    family: str  # float | fp8 | int8 | int4 | gguf
    bits: float  # bits per quantized weight (effective, for GGUF: over the whole file)
    rank: int  # quality rank, higher is better
    compute: str = "fp16"  # tensor-core dtype of the matmuls: fp16 | fp8
    needs_bf16: bool = False
    needs_imatrix: bool = False
    ppl_increase_pct: float | None = None  # vs F16, Llama 3 70B (XiongjieDai's README)
    gguf_type: str | None = None  # llama.cpp's LLAMA_FTYPE name for the quantizer

    @property
    def is_gguf(self) -> bool:
        return self.gguf_type is not None

    def weight_bytes(self, model: ModelArch) -> tuple[float, str]:
        """Bytes of the weights and where the figure comes from."""
        if self.id in model.published_bytes:
            return model.published_bytes[self.id], model.size_sources[self.id]
        if self.family == "gguf" or self.family == "float":
            return model.params * self.bits / 8, f"{self.bits:.2f} bits/weight x parameters"
        embed = 2 * model.vocab * model.hidden  # input embedding and output head, 16-bit
        core = max(model.params - embed, 0)
        return (
            core * self.bits / 8 + embed * 2,
            f"{self.bits:.2f} bits/weight on blocks, 16-bit embeddings (arithmetic)",
        )


_PRECISIONS = [
    Precision("f16", "F16", "float", 16, 100, gguf_type="MOSTLY_F16"),
    Precision("bf16", "BF16", "float", 16, 100, needs_bf16=True, gguf_type="MOSTLY_BF16"),
    Precision("fp8_w8a8", "FP8 W8A8", "fp8", 8, 92, compute="fp8"),
    Precision("fp8_w8a16", "FP8 W8A16", "fp8", 8, 91),
    Precision("q8_0", "Q8_0", "gguf", _bpw_70b(74.98), 90, gguf_type="MOSTLY_Q8_0"),
    Precision("int8_sq", "INT8 SmoothQuant", "int8", 8, 85),
    Precision("q6_k", "Q6_K", "gguf", 6.5625, 80, gguf_type="MOSTLY_Q6_K"),
    Precision("q5_k_m", "Q5_K_M", "gguf", _bpw_70b(49.95), 70, ppl_increase_pct=1.23,
              gguf_type="MOSTLY_Q5_K_M"),
    # W4A16 with group-128 scales and zeros: 4 + 16/128 + 4/128 bits.
    Precision("awq_int4", "INT4 AWQ", "int4", 4.16, 60),
    Precision("gptq_int4", "INT4 GPTQ", "int4", 4.16, 60),
    Precision("q4_k_m", "Q4_K_M", "gguf", _bpw_70b(42.52), 60, ppl_increase_pct=4.83,
              gguf_type="MOSTLY_Q4_K_M"),
    Precision("iq4_xs", "IQ4_XS", "gguf", 4.25, 55, needs_imatrix=True,
              gguf_type="MOSTLY_IQ4_XS"),
    Precision("iq3_m", "IQ3_M", "gguf", _bpw_70b(31.94), 40, needs_imatrix=True,
              ppl_increase_pct=21.5, gguf_type="MOSTLY_IQ3_M"),
    Precision("q2_k", "Q2_K", "gguf", _bpw_70b(26.4), 20, ppl_increase_pct=68.7,
              gguf_type="MOSTLY_Q2_K"),
]

PRECISIONS: dict[str, Precision] = {p.id: p for p in _PRECISIONS}


def get_precision(precision_id: str) -> Precision:
    try:
        return PRECISIONS[precision_id.lower()]
    except KeyError:
        raise UnknownNameError("precision", precision_id, list(PRECISIONS)) from None


def quality_order() -> list[str]:
    """Precision ids from best to worst, the order the router and the docs show."""
    return [p.id for p in sorted(_PRECISIONS, key=lambda p: -p.rank)]


def at_least(precision_id: str, floor_id: str | None) -> bool:
    """Whether a precision meets a floor (same rank counts as meeting it)."""
    if floor_id is None:
        return True
    return get_precision(precision_id).rank >= get_precision(floor_id).rank
