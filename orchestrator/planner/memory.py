"""Memory model: does a (precision, backend, layout) fit, and how much KV cache is left.

Per GPU: usable = VRAM x usable fraction; it must hold its share of the weights (an even
split over the replica's GPUs, by tensor or by layer) plus the backend's runtime overhead;
what is left on all the replica's GPUs together is KV cache. CPU node types have an
explicit memory budget, all of it usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.hardware.catalog import GIB
from orchestrator.backends import Backend
from orchestrator.models.catalog import ModelArch
from orchestrator.planner.nodes import ReplicaLayout



def kv_bytes_per_element(kv_dtype: str, backend: Backend) -> float:
    """Bytes per KV element of the requested cache dtype, as this backend stores it."""
    return backend.kv_bytes[kv_dtype]


@dataclass(frozen=True)
class MemoryFit:
    usable_bytes: float  # per replica
    weights_bytes: float  # per replica
    overhead_bytes: float  # per replica
    kv_bytes: float  # KV room per replica (negative: short by that much)
    kv_bytes_per_token: float
    per_device_usable: float
    per_device_weights: float
    per_device_overhead: float

    @property
    def kv_tokens(self) -> int:
        return max(int(self.kv_bytes // self.kv_bytes_per_token), 0)

    @property
    def weights_fit(self) -> bool:
        return self.per_device_weights + self.per_device_overhead <= self.per_device_usable


def fit(layout: ReplicaLayout, backend: Backend, model: ModelArch, weights_bytes: float,
        kv_dtype: str, usable_fraction: float) -> MemoryFit:
    hw = layout.hw
    if hw.is_cpu:
        device_usable = hw.cpu.memory_bytes
        device_overhead = backend.overhead_gib_cpu * GIB
        devices = 1
    else:
        device_usable = hw.gpu.vram_bytes * usable_fraction
        device_overhead = backend.overhead_gib_per_gpu * GIB
        devices = layout.size
    per_device_weights = weights_bytes / devices
    kv_room = devices * (device_usable - per_device_weights - device_overhead)
    return MemoryFit(
        usable_bytes=devices * device_usable,
        weights_bytes=weights_bytes,
        overhead_bytes=devices * device_overhead,
        kv_bytes=kv_room,
        kv_bytes_per_token=model.kv_bytes_per_token(kv_bytes_per_element(kv_dtype, backend)),
        per_device_usable=device_usable,
        per_device_weights=per_device_weights,
        per_device_overhead=device_overhead,
    )
