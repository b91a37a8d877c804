"""Cluster specs: pydantic models with extra="forbid", and a loader whose errors name the
file, the field and the valid choices."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.defaults import GPU_GROUP_PREFIX, MAX_WAITING, gpu_group_resource
from orchestrator.errors import Deprecated, SpecError
from orchestrator.hardware.catalog import GPU_CATALOG
from orchestrator.backends import BACKENDS
from orchestrator.models.catalog import MODEL_CATALOG
from orchestrator.models.checkpoints import CHECKPOINTS
from orchestrator.models.precision import PRECISIONS
from orchestrator.planner.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from orchestrator.router.prefix import BLOCK_TOKENS

_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def _one_of(kind: str, value: str, valid) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(valid))}")
    return value


def _renamed(data: Any, old: str, new: str, where: str) -> Any:
    """Accept a key under its deprecated name: map ``old`` to ``new`` and warn, so specs
    written before the rename keep loading; both at once is ambiguous, so an error."""
    if not isinstance(data, dict) or old not in data:
        return data
    if new in data:
        raise ValueError(f"{where}.{old} and {where}.{new} are both set; {old} is the "
                         f"deprecated name of {new}: keep only {where}.{new}")
    warnings.warn(f"{where}.{old} is deprecated; write {where}.{new}", Deprecated,
                  stacklevel=2)
    return {(new if k == old else k): v for k, v in data.items()}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CPUSpec(_Spec):
    """A CPU-only node type: llama.cpp on the cores, within a memory budget."""

    cores: int = Field(gt=0, description="cores one replica may use")
    memory_gb: float = Field(gt=0, description="memory budget for the model, in GB (10^9 B)")
    memory_bandwidth_gbs: float = Field(
        20.0, gt=0, description="memory bandwidth the cores reach, GB/s")
    peak_tflops: float = Field(
        0.3, gt=0, description="effective matmul TFLOP/s llama.cpp reaches on these cores")
    isa: Literal["sse4.2", "avx2", "avx512", "avx512-vnni"] = Field(
        "avx2", description="instruction set that binaries compiled for this node type use "
                            "(llama-server); every node of the type must have it")


class PoolScalingSpec(_Spec):
    """Autoscaling bounds for one node type's pool. Its presence turns autoscaling on."""

    min_replicas: int | None = Field(
        None, ge=0, description="fewest replicas (default 1; 0 only with scale_to_zero)")
    max_replicas: int | None = Field(
        None, gt=0, description="most replicas (default and ceiling: the GPU groups of this "
                                "type in the inventory, i.e. the plan's replicas)")
    initial_replicas: int | None = Field(
        None, ge=0, description="replicas at deploy time (default: min_replicas)")
    scale_to_zero: bool = Field(
        False, description="allow 0 replicas when idle; requests then go to another pool "
                           "or wait for a cold start")

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_replicas == 0 and not self.scale_to_zero:
            raise ValueError("min_replicas 0 needs scale_to_zero: true")
        if (self.min_replicas is not None and self.max_replicas is not None
                and self.min_replicas > self.max_replicas):
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas "
                             f"{self.max_replicas}")
        return self


class AutoscalingSpec(_Spec):
    """The policy's knobs (docs/autoscaling.md); bounds are per node type."""

    target_utilization: float = Field(
        0.7, gt=0, le=1, description="in-flight sequences / pool capacity to run at")
    low_utilization: float = Field(
        0.3, ge=0, lt=1, description="below this a pool may lose a replica")
    up_cooldown_s: float = Field(10.0, ge=0, description="least time between two scale-ups "
                                                          "of one pool")
    down_delay_s: float = Field(120.0, ge=0, description="how long load must stay low before "
                                                         "a replica goes")
    prefill_backlog_s: float = Field(
        1.0, gt=0, description="seconds a pool's queued prompt tokens should take to "
        "prefill; a longer backlog scales the pool up (it is TTFT a new request pays)")

    @model_validator(mode="after")
    def _order(self):
        if self.low_utilization >= self.target_utilization:
            raise ValueError(f"low_utilization {self.low_utilization} must be below "
                             f"target_utilization {self.target_utilization}")
        return self


class UpstreamSpec(_Spec):
    """An OpenAI-compatible server a pool fronts (docs/backends.md): one that the replica
    starts from `command`, or one that already runs on the node at `url`."""

    command: list[str] | None = Field(
        None, min_length=1, description="argv the replica starts; {port} is a free port on "
        "127.0.0.1 it picks, {model} the node type's GGUF artifact, {threads} its cores")
    url: str | None = Field(
        None, description="the server's base URL (default with command: "
                          "http://127.0.0.1:{port}); without command, a server already "
                          "running on the node")
    served_model: str = Field("model", min_length=1,
                              description="the name the server knows the model by")
    max_batch: int = Field(1, gt=0, description="sequences the server decodes at once")
    context: int | None = Field(None, gt=0, description="tokens one sequence may hold there "
                                                        "(default: the plan's)")
    health_path: str = Field("/v1/models", pattern=r"^/",
                             description="answers 200 once the server is ready")
    api_key_env: str | None = Field(
        None, description="environment variable on the node holding the server's API key")
    start_timeout_s: float = Field(600.0, gt=0, description="how long it may take to be ready")

    @model_validator(mode="after")
    def _command_or_url(self):
        if self.command is None and self.url is None:
            raise ValueError("set command (a server the replica starts) or url (one that "
                             "already runs on the node)")
        if self.command is None and "{port}" in (self.url or ""):
            raise ValueError("url has {port} but there is no command to start on it")
        return self


class NodeTypeSpec(_Spec):
    name: str = Field(pattern=_NAME, description="node type name; also its Ray resource "
                      f"{GPU_GROUP_PREFIX}<name>")
    gpu: str | None = Field(None, description="GPU model id from the catalog")
    gpus_per_node: int | None = Field(None, gt=0, description="GPUs in each node's GPU group")
    interconnect: Literal["nvlink", "pcie"] = Field(
        "pcie", description="link between the node's GPUs")
    cpu: CPUSpec | None = Field(None, description="set for CPU-only node types instead of gpu")
    count: int = Field(1, gt=0, description="how many nodes of this type")
    addresses: list[str] = Field(default_factory=list, description="hosts of the nodes")
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes node labels")
    cost_per_hour: float | None = Field(None, ge=0, description="cost of one node per hour")
    objective: str | None = Field(
        None, description="planning objective for this node type only (quality | throughput | "
                          "balanced); default: planner.objective")
    precisions: list[str] | None = Field(
        None, description="only consider these precisions (e.g. the checkpoints you have)")
    backends: list[str] | None = Field(None, description="only consider these backends")
    upstream: UpstreamSpec | None = Field(
        None, description="the OpenAI-compatible server this node type's pool fronts, for "
                          "the backends that front one")
    autoscaling: PoolScalingSpec | None = Field(
        None, description="autoscale this node type's pool within these bounds")

    @model_validator(mode="before")
    @classmethod
    def _objective_was_policy(cls, data):
        name = data.get("name") if isinstance(data, dict) else None
        where = f"node_types ({name})" if isinstance(name, str) else "node_types[]"
        return _renamed(data, "policy", "objective", where)

    @field_validator("gpu")
    @classmethod
    def _gpu_known(cls, v):
        return None if v is None else _one_of("GPU model", v, GPU_CATALOG)

    @field_validator("objective")
    @classmethod
    def _objective_known(cls, v):
        return None if v is None else _one_of("planner objective", v, OBJECTIVES)

    @field_validator("precisions")
    @classmethod
    def _precisions_known(cls, v):
        return None if v is None else [_one_of("precision", p.lower(), PRECISIONS) for p in v]

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, v):
        return None if v is None else [_one_of("backend", b, BACKENDS) for b in v]

    @model_validator(mode="after")
    def _gpu_or_cpu(self):
        if (self.gpu is None) == (self.cpu is None):
            raise ValueError("set exactly one of 'gpu' (with gpus_per_node) or 'cpu'")
        if self.gpu is not None:
            if self.gpus_per_node is None:
                raise ValueError(f"'gpus_per_node' is required with gpu: {self.gpu}")
            if self.interconnect == "nvlink" and not GPU_CATALOG[self.gpu].nvlink:
                raise ValueError(f"{self.gpu} has no NVLink; use interconnect: pcie")
        elif self.gpus_per_node is not None:
            raise ValueError("'gpus_per_node' applies to GPU node types; remove it with 'cpu'")
        if len(self.addresses) > self.count:
            raise ValueError(f"{len(self.addresses)} addresses for count {self.count}")
        listed = [BACKENDS[b] for b in self.backends or ()]
        for b in listed:
            if (why := b.check_node(self)) is not None:
                raise ValueError(why)
        if self.upstream is not None and not any(b.fronts_upstream for b in listed):
            raise ValueError("upstream is set but no backend in backends fronts one: "
                             "add " + " or ".join(b.id for b in BACKENDS.values()
                                                  if b.fronts_upstream))
        return self

    @property
    def is_cpu(self) -> bool:
        return self.cpu is not None

    @property
    def resource(self) -> str:
        """The Ray custom resource that each GPU group of this type advertises."""
        return gpu_group_resource(self.name)


class PlannerSpec(_Spec):
    objective: str = Field(DEFAULT_OBJECTIVE, description="what the planner optimizes per "
                           "node type: quality | throughput | balanced")
    min_context: int = Field(4096, gt=0, description="tokens one sequence must be able to hold")
    min_precision: str | None = Field(None, description="lowest acceptable precision")
    typical_sequence: int = Field(
        2048, gt=0, description="prompt+output tokens of a typical request, for concurrency")
    kv_cache_dtype: Literal["auto", "fp16", "fp8", "q8_0", "q4_0"] = Field(
        "auto", description="KV cache element type; auto: per node type, the least lossy its "
        "backend keeps on that GPU that holds min_context (fp16, then fp8 on sm89+ for "
        "vLLM and TensorRT-LLM, q8_0 then q4_0 for llama.cpp); a type names an override "
        "(fp8 on llama.cpp means its q8_0)")
    usable_memory_fraction: float = Field(
        0.9, gt=0, le=1, description="share of VRAM the engine may take (vLLM's default 0.9)")
    backends: list[str] | None = Field(None, description="backends to consider; all if unset")

    @model_validator(mode="before")
    @classmethod
    def _objective_was_policy(cls, data):
        return _renamed(data, "policy", "objective", "planner")

    @field_validator("objective")
    @classmethod
    def _objective_known(cls, v):
        return _one_of("planner objective", v, OBJECTIVES)

    @field_validator("min_precision")
    @classmethod
    def _precision_known(cls, v):
        return None if v is None else _one_of("precision", v.lower(), PRECISIONS)

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, v):
        return None if v is None else [_one_of("backend", b, BACKENDS) for b in v]


SOURCE_KINDS = tuple(CHECKPOINTS)


class ArtifactsSpec(_Spec):
    store: str | None = Field(
        None, description="a store directory that every node really mounts; unset: each "
                          "node keeps its own ($ORCHESTRATOR_STORE or ~/.cache/orchestrator/"
                          "artifacts) and artifacts move between nodes through Ray "
                          "(docs/builds.md)")
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="where the model's checkpoints are (a path, file:// or "
                    "hf://ORG/REPO[/FILE][@REVISION]), by format: "
                    + "; ".join(f"{k}: {v}" for k, v in CHECKPOINTS.items())
                    + ". Named ones limit the plan to what a backend can start from them")

    @field_validator("sources")
    @classmethod
    def _kinds_known(cls, v):
        for k in v:
            _one_of("source kind", k, SOURCE_KINDS)
        return v


PUBLIC_PATHS = ("/health", "/metrics", "/status", "/v1/models")


class ServingSpec(_Spec):
    """How the endpoint treats requests: queue bounds, body size, and who may call it."""

    max_waiting: int = Field(
        MAX_WAITING, gt=0, description="requests one replica may queue beyond its batch; "
                                       "past every eligible replica's bound the endpoint "
                                       "answers 429")
    max_context: int | None = Field(
        None, gt=0, description="cap on prompt + max_tokens per request (default: what "
                                "each pool's plan holds)")
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="largest request body accepted; larger gets 413")
    api_keys_env: str | None = Field(
        "ORCHESTRATOR_API_KEYS", description="environment variable holding API keys "
                                             "(comma or newline separated), read by `up`")
    api_keys_file: str | None = Field(
        None, description="file with one API key per line, read by `up`")
    public_paths: list[str] = Field(
        ["/health"], description="paths answered without a key when keys are set: any of "
                                 + ", ".join(PUBLIC_PATHS))
    default_max_tokens: int = Field(
        256, gt=0, description="output limit of a request that sets neither max_tokens nor "
                               "max_completion_tokens")
    first_token_timeout_s: float = Field(
        600.0, gt=0, description="a request whose first token has not come this long after "
                                 "it was dispatched (queueing included) ends with 504")
    inter_token_timeout_s: float = Field(
        120.0, gt=0, description="a request whose engine sends nothing for this long after "
                                 "its first token ends with 504 (an error event in a stream)")
    engine_stall_s: float = Field(
        300.0, gt=0, description="an engine that has work and makes no progress (no token, "
                                 "no request taken) this long fails its health check, and "
                                 "Ray Serve replaces the replica; above the longest prefill")
    block_tokens: int = Field(
        BLOCK_TOKENS, gt=0, description="tokens per prompt block the router hashes to guess "
                                        "which replica has a prompt's prefix cached")
    policy_header: bool = Field(
        False, description="let a request choose a routing policy with the header "
                           "x-orchestrator-policy (for comparisons); off: the header is a 400")

    @field_validator("public_paths")
    @classmethod
    def _paths_known(cls, v):
        return [_one_of("public path", p, PUBLIC_PATHS) for p in v]


class ClusterSpec(_Spec):
    name: str = Field(pattern=_NAME, description="cluster name")
    model: str = Field("llama-3.1-70b", description="model id from the catalog")
    planner: PlannerSpec = Field(default_factory=PlannerSpec)
    artifacts: ArtifactsSpec = Field(default_factory=ArtifactsSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    node_types: list[NodeTypeSpec] = Field(min_length=1)

    @field_validator("model")
    @classmethod
    def _model_known(cls, v):
        return _one_of("model", v, MODEL_CATALOG)

    @field_validator("node_types")
    @classmethod
    def _unique_names(cls, v):
        seen: set[str] = set()
        for nt in v:
            if nt.name in seen:
                raise ValueError(f"duplicate node type name {nt.name!r}; names must be unique")
            seen.add(nt.name)
        return v

    def node_type(self, name: str) -> NodeTypeSpec:
        for nt in self.node_types:
            if nt.name == name:
                return nt
        raise SpecError(f"no node type {name!r}; node types: "
                        f"{', '.join(n.name for n in self.node_types)}")


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read cluster spec: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a cluster spec is a mapping with 'name' and 'node_types'")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as e:
        from orchestrator.config_errors import format_validation_error

        raise SpecError(format_validation_error(path, e, data)) from None
