"""Performance model: decode is memory-bound, prefill is compute-bound (docs/sources.md:
Decode and prefill).

A decode step of B sequences reads every weight once plus each sequence's KV cache, and
does ~2 x params FLOPs per sequence; it takes the longer of the two. The physical ceiling
is that time at 100 % of bandwidth and peak; the estimate scales each side by an efficiency
fitted on published measurements (``Backend.calibration``), so every estimate comes with
the ceiling it cannot exceed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import mean

from orchestrator.hardware.catalog import get_gpu
from orchestrator.backends import BACKENDS, Backend
from orchestrator.models.catalog import ModelArch, get_model
from orchestrator.models.precision import Precision, get_precision
from orchestrator.planner.nodes import NodeHardware, ReplicaLayout

# Prefill at 40 % of peak where nothing better is published: an assumption, below every
# fitted figure (docs/sources.md: Decode and prefill).
DEFAULT_PREFILL_EFFICIENCY = 0.40


@dataclass(frozen=True)
class Speeds:
    """What the simulator and the router need to time one replica."""

    weights_bytes: float
    kv_bytes_per_token: float
    bandwidth_bytes_s: float  # effective (efficiency applied)
    flops_s: float  # effective
    flops_per_token: float
    ceiling_bandwidth_bytes_s: float
    ceiling_flops_s: float

    def decode_step_s(self, batch: int, avg_context: float, *, ceiling: bool = False) -> float:
        bw = self.ceiling_bandwidth_bytes_s if ceiling else self.bandwidth_bytes_s
        fl = self.ceiling_flops_s if ceiling else self.flops_s
        memory = (self.weights_bytes + batch * avg_context * self.kv_bytes_per_token) / bw
        compute = batch * self.flops_per_token / fl
        return max(memory, compute)

    def decode_tokens_per_s(self, batch: int, avg_context: float, *, ceiling=False) -> float:
        return batch / self.decode_step_s(batch, avg_context, ceiling=ceiling)

    def prefill_tokens_per_s(self, *, ceiling: bool = False) -> float:
        return (self.ceiling_flops_s if ceiling else self.flops_s) / self.flops_per_token


def speeds(layout: ReplicaLayout, backend: Backend, model: ModelArch, precision: Precision,
           weights_bytes: float, kv_bytes_per_token: float) -> Speeds:
    link = layout.link_efficiency
    bw = layout.bandwidth_bytes_s()
    fl = layout.peak_flops(precision)
    prefill_eff = 1.0 if layout.hw.is_cpu else prefill_efficiency(backend.id)
    return Speeds(
        weights_bytes=weights_bytes,
        kv_bytes_per_token=kv_bytes_per_token,
        bandwidth_bytes_s=bw * decode_efficiency(backend.id) * link,
        flops_s=fl * prefill_eff * link,
        flops_per_token=model.flops_per_token,
        ceiling_bandwidth_bytes_s=bw,
        ceiling_flops_s=fl,
    )


def _calibration_layout(c) -> ReplicaLayout:
    gpu = get_gpu(c.gpu)
    return ReplicaLayout(NodeHardware(gpu, c.gpus, gpu.nvlink), c.gpus, c.parallelism)


@lru_cache(maxsize=None)
def decode_efficiency(backend_id: str) -> float:
    """Mean of measured / ceiling single-stream decode over the backend's published points."""
    backend = BACKENDS[backend_id]
    points = [c for c in backend.calibration if c.kind == "decode"]
    if not points and backend.calibration_from:
        return decode_efficiency(backend.calibration_from)
    ratios = []
    for c in points:
        model, precision = get_model(c.model), get_precision(c.precision)
        weights, _ = precision.weight_bytes(model)
        layout = _calibration_layout(c)
        sp = speeds_at_ceiling(layout, model, precision, weights)
        avg_ctx = c.prompt_tokens + c.output_tokens / 2
        ratios.append(c.tokens_per_s / sp.decode_tokens_per_s(1, avg_ctx, ceiling=True))
    return mean(ratios)


@lru_cache(maxsize=None)
def prefill_efficiency(backend_id: str) -> float:
    """Mean of measured / peak prompt throughput over the backend's published points."""
    points = [c for c in BACKENDS[backend_id].calibration if c.kind == "prefill"]
    if not points:
        return DEFAULT_PREFILL_EFFICIENCY
    ratios = []
    for c in points:
        model, precision = get_model(c.model), get_precision(c.precision)
        weights, _ = precision.weight_bytes(model)
        sp = speeds_at_ceiling(_calibration_layout(c), model, precision, weights)
        ratios.append(c.tokens_per_s / sp.prefill_tokens_per_s(ceiling=True))
    return mean(ratios)


def speeds_at_ceiling(layout, model, precision, weights_bytes) -> Speeds:
    bw, fl = layout.bandwidth_bytes_s(), layout.peak_flops(precision)
    kv = model.kv_bytes_per_token(2)
    return Speeds(weights_bytes, kv, bw, fl, model.flops_per_token, bw, fl)
