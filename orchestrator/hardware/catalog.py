"""GPU catalog: what the planner needs to know about each GPU model.

Every row is from NVIDIA's whitepapers and datasheets (AWS's for the A10G); which document
gives which GPU is in docs/sources.md, "GPUs". ``fp16_tflops`` is dense tensor throughput
with FP32 accumulation (what inference frameworks use: 71 TFLOP/s for an RTX 3090 in the
GA102 whitepaper); ``fp8_tflops`` is None where the chip has no FP8 tensor cores (before
sm89).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import UnknownNameError

GIB = 1024**3
GB = 1000**3


@dataclass(frozen=True)
class GPUModel:
    id: str
    nvml_names: tuple[str, ...]
    vram_gib: float
    bandwidth_gbs: float
    sm: int  # compute capability as major*10 + minor
    fp16_tflops: float
    fp8_tflops: float | None = None
    bf16: bool = True
    nvlink: bool = False
    notes: str = ""

    @property
    def vram_bytes(self) -> int:
        return int(self.vram_gib * GIB)

    @property
    def arch(self) -> str:
        return f"sm{self.sm}"

    @property
    def fp8(self) -> bool:
        return self.fp8_tflops is not None

    @property
    def int4_kernels(self) -> bool:
        # Marlin / TensorRT-LLM W4A16 kernels need Ampere or newer (vLLM's quantization
        # hardware table, TensorRT-LLM's support matrix; docs/sources.md).
        return self.sm >= 80

    def supports(self) -> list[str]:
        feats = ["FP16"]
        if self.bf16:
            feats.append("BF16")
        if self.fp8:
            feats.append("FP8")
        if self.int4_kernels:
            feats.append("INT4 W4A16")
        return feats


def _g(id, names, vram, bw, sm, fp16, fp8=None, *, bf16=True, nvlink=False, notes=""):
    names = (names,) if isinstance(names, str) else tuple(names)
    return GPUModel(id, names, vram, bw, sm, fp16, fp8, bf16, nvlink, notes)


_MODELS = [
    _g("rtx-3090", "NVIDIA GeForce RTX 3090", 24, 936, 86, 71, nvlink=True,
       notes="NVLink bridge on pairs"),
    _g("rtx-3090-ti", "NVIDIA GeForce RTX 3090 Ti", 24, 1008, 86, 80, nvlink=True),
    _g("rtx-4090", "NVIDIA GeForce RTX 4090", 24, 1008, 89, 165.2, 330.3, notes="no NVLink"),
    _g("rtx-a6000", "NVIDIA RTX A6000", 48, 768, 86, 154.8, nvlink=True),
    _g("rtx-6000-ada", "NVIDIA RTX 6000 Ada Generation", 48, 960, 89, 364.2, 728.5),
    _g("a10g", "NVIDIA A10G", 22.5, 600, 86, 70),
    _g("l4", "NVIDIA L4", 22.5, 300, 89, 121, 242),
    _g("l40s", "NVIDIA L40S", 45, 864, 89, 362, 733),
    _g("t4", "Tesla T4", 15, 320, 75, 65, bf16=False),
    _g("v100-sxm2-16g", "Tesla V100-SXM2-16GB", 16, 900, 70, 125, bf16=False, nvlink=True),
    _g("v100-sxm2-32g", "Tesla V100-SXM2-32GB", 32, 900, 70, 125, bf16=False, nvlink=True),
    _g("v100-pcie-16g", "Tesla V100-PCIE-16GB", 16, 900, 70, 112, bf16=False),
    _g("v100-pcie-32g", "Tesla V100-PCIE-32GB", 32, 900, 70, 112, bf16=False),
    _g("a100-40g-pcie", "NVIDIA A100-PCIE-40GB", 40, 1555, 80, 312, nvlink=True),
    _g("a100-40g-sxm", "NVIDIA A100-SXM4-40GB", 40, 1555, 80, 312, nvlink=True),
    _g("a100-80g-pcie", "NVIDIA A100 80GB PCIe", 80, 1935, 80, 312, nvlink=True),
    _g("a100-80g-sxm", "NVIDIA A100-SXM4-80GB", 80, 2039, 80, 312, nvlink=True),
    _g("h100-pcie", "NVIDIA H100 PCIe", 79.6, 2000, 90, 756, 1513, nvlink=True),
    _g("h100-sxm", ("NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB"), 79.6, 3350, 90, 989,
       1979, nvlink=True),
    _g("h200", ("NVIDIA H200", "NVIDIA H200 141GB HBM3e"), 140.4, 4800, 90, 989, 1979,
       nvlink=True),
]

GPU_CATALOG: dict[str, GPUModel] = {m.id: m for m in _MODELS}
_BY_NVML_NAME: dict[str, GPUModel] = {n: m for m in _MODELS for n in m.nvml_names}


def get_gpu(gpu_id: str) -> GPUModel:
    try:
        return GPU_CATALOG[gpu_id]
    except KeyError:
        raise UnknownNameError("GPU model", gpu_id, list(GPU_CATALOG)) from None


def match_nvml_name(name: str) -> GPUModel | None:
    """The catalog entry whose NVML name is exactly ``name`` (variants differ: A100 40 vs 80)."""
    return _BY_NVML_NAME.get(name.strip())


def unknown_gpu(name: str, memory_bytes: int, sm: int, bandwidth_gbs: float | None) -> GPUModel:
    """A best-effort entry for a GPU the catalog lacks, from what NVML reports about it.

    Compute throughput is taken from the catalog GPU of the same compute capability with the
    lowest figure, so the planner never promises more than a known sibling delivers.
    """
    same_arch = [m for m in _MODELS if m.sm == sm]
    siblings = same_arch or [m for m in _MODELS if m.sm <= sm] or _MODELS
    floor = min(siblings, key=lambda m: m.fp16_tflops)
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    bw = bandwidth_gbs if bandwidth_gbs else min(m.bandwidth_gbs for m in siblings)
    return GPUModel(
        id=f"unknown-{slug}" if slug else "unknown",
        nvml_names=(name,),
        vram_gib=round(memory_bytes / GIB, 2),
        bandwidth_gbs=bw,
        sm=sm,
        fp16_tflops=floor.fp16_tflops,
        fp8_tflops=floor.fp8_tflops if sm >= 89 else None,
        bf16=sm >= 80,
        notes=f"not in the catalog: compute from {floor.id}, memory from NVML",
    )
