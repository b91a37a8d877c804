"""The planner's view of a node type's hardware (``NodeHardware``, from a spec's node type)
and of how one replica uses its share of it (``ReplicaLayout``: GPUs, parallelism, and the
bandwidth and FLOP/s they give). Not to be confused with ``orchestrator.hardware``, which
knows GPU models and discovers what a machine has."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import NodeTypeSpec
from orchestrator.hardware.catalog import GB, GPUModel, get_gpu
from orchestrator.models.precision import Precision

# Tensor parallelism over PCIe pays for all-reduces that NVLink hides; no source here
# measures it, so this is a stated assumption (docs/sources.md: Decode and prefill).
PCIE_TP_EFFICIENCY = 0.85


@dataclass(frozen=True)
class CPUHardware:
    cores: int
    memory_bytes: float
    bandwidth_gbs: float
    peak_tflops: float


@dataclass(frozen=True)
class NodeHardware:
    gpu: GPUModel | None
    gpus: int
    nvlink: bool
    cpu: CPUHardware | None = None

    @property
    def is_cpu(self) -> bool:
        return self.gpu is None

    def describe(self) -> str:
        if self.gpu is None:
            return f"CPU, {self.cpu.cores} core(s), {self.cpu.memory_bytes / GB:.2f} GB budget"
        link = "NVLink" if self.nvlink else "PCIe"
        return f"{self.gpus}x {self.gpu.id} ({self.gpu.vram_gib:g} GiB each, {link})"


def hardware_of(nt: NodeTypeSpec) -> NodeHardware:
    if nt.cpu is not None:
        c = nt.cpu
        return NodeHardware(None, 0, False, CPUHardware(
            c.cores, c.memory_gb * GB, c.memory_bandwidth_gbs, c.peak_tflops))
    return NodeHardware(get_gpu(nt.gpu), nt.gpus_per_node, nt.interconnect == "nvlink")


@dataclass(frozen=True)
class ReplicaLayout:
    """How one replica uses its GPUs: ``size`` GPUs working by ``parallelism``."""

    hw: NodeHardware
    size: int  # GPUs per replica (1 on CPU)
    parallelism: str  # tensor | layer | none

    @property
    def active_gpus(self) -> int:
        # A layer split runs one GPU at a time, tensor parallelism all at once (llama.cpp's
        # llama_split_mode; docs/sources.md: Which precision runs where).
        return self.size if self.parallelism == "tensor" else 1

    def bandwidth_bytes_s(self) -> float:
        if self.hw.is_cpu:
            return self.hw.cpu.bandwidth_gbs * GB
        return self.active_gpus * self.hw.gpu.bandwidth_gbs * GB

    def peak_flops(self, precision: Precision) -> float:
        if self.hw.is_cpu:
            return self.hw.cpu.peak_tflops * 1e12
        gpu = self.hw.gpu
        tflops = gpu.fp8_tflops if precision.compute == "fp8" and gpu.fp8 else gpu.fp16_tflops
        return self.active_gpus * tflops * 1e12

    @property
    def link_efficiency(self) -> float:
        if self.parallelism == "tensor" and self.size > 1 and not self.hw.nvlink:
            return PCIE_TP_EFFICIENCY
        return 1.0

    def describe(self) -> str:
        if self.hw.is_cpu:
            return "CPU"
        if self.size == 1:
            return "1 GPU"
        return f"{'TP' if self.parallelism == 'tensor' else 'layer split'} {self.size}"
