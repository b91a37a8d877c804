"""The Plan: plain data that everything downstream consumes and nothing re-derives."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from orchestrator.planner.performance import Speeds


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _objective_was_policy(data: Any) -> Any:
    """A plan serialized before the planner's "policy" was renamed "objective" still loads:
    Helm values and Serve configs carry the plan as JSON, and an older release's values may
    meet a newer image."""
    if isinstance(data, dict) and "policy" in data and "objective" not in data:
        data = {("objective" if k == "policy" else k): v for k, v in data.items()}
    return data


class MemorySplit(_Data):
    """Bytes per replica."""

    usable_bytes: int
    weights_bytes: int
    weights_source: str
    overhead_bytes: int
    kv_room_bytes: int
    kv_bytes_per_token: int
    kv_tokens: int
    max_context: int
    concurrent_sequences: int  # of the spec's typical length, by KV room


class PerfEstimate(_Data):
    single_stream_tokens_per_s: float  # seed method (docs/sources.md): 512 in, 256 out
    single_stream_ceiling: float
    batched_tokens_per_s: float  # per replica, at `batch` sequences of typical length
    batched_ceiling: float
    batch: int
    prefill_tokens_per_s: float
    prefill_ceiling: float
    decode_efficiency: float
    prefill_efficiency: float
    chunked_prefill: bool


class SpeedModel(_Data):
    """The inputs of ``performance.Speeds``, so the simulator times replicas the same way."""

    weights_bytes: float
    kv_bytes_per_token: float
    bandwidth_bytes_s: float
    flops_s: float
    flops_per_token: float
    ceiling_bandwidth_bytes_s: float
    ceiling_flops_s: float

    def speeds(self) -> Speeds:
        return Speeds(**self.model_dump())


class Choice(_Data):
    precision: str
    precision_display: str
    quality_rank: int
    backend: str
    parallelism: str  # tensor | layer | none
    gpus_per_replica: int
    replicas_per_node: int
    memory: MemorySplit
    perf: PerfEstimate
    speed_model: SpeedModel
    node_tokens_per_s: float
    replica_resources: dict[str, float]
    why: str
    # the cache type chosen for this node type (planner.kv_cache_dtype auto: the least lossy
    # that holds min_context), and why
    kv_cache_dtype: str = "fp16"
    kv_note: str = ""
    # the artifacts.sources kind the build starts from; None: the spec names no checkpoints
    # (the backend's default kind, assumed at hand)
    checkpoint: str | None = None

    @property
    def single_stream_tokens_per_s(self) -> float:
        return self.perf.single_stream_tokens_per_s

    @property
    def layout(self) -> str:
        if self.parallelism == "none":
            return "CPU"
        if self.gpus_per_replica == 1:
            return "1 GPU"
        kind = "TP" if self.parallelism == "tensor" else "layer split"
        return f"{kind} {self.gpus_per_replica}"


class Rejection(_Data):
    precision: str
    backend: str | None
    layout: str | None
    kind: str  # unavailable | unsupported | floor | memory | context | not_chosen
    reason: str
    shortfall_bytes: int | None = None


class NodePlan(_Data):
    node_type: str
    hardware: str
    count: int
    objective: str  # quality | throughput | balanced (planner/objectives.py)
    choice: Choice | None
    alternatives: list[Rejection]  # fit, but the objective preferred the choice
    rejected: list[Rejection]
    not_offered: list[str]  # "vllm: q8_0, q6_k, ..." (formats the backend does not load)
    shortfall: str | None  # when nothing fits: what came closest and by how much

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return _objective_was_policy(data)

    @property
    def replicas(self) -> int:
        return self.count * self.choice.replicas_per_node if self.choice else 0


class Plan(_Data):
    cluster: str
    model: str
    model_display: str
    objective: str
    min_context: int
    min_precision: str | None
    kv_cache_dtype: str  # the spec's: auto, or the one type every node type must use
    typical_sequence: int
    node_types: list[NodePlan]

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return _objective_was_policy(data)

    @property
    def feasible(self) -> bool:
        return any(n.choice for n in self.node_types)

    def pools(self) -> list[NodePlan]:
        return [n for n in self.node_types if n.choice]
