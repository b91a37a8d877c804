"""What a backend is: one class that holds everything the project knows and does for one
inference engine, so that adding a backend is one new module in this package.

- facts the planner reads: which precision runs on which GPU architecture, how a replica
  spreads over GPUs, runtime overhead, batch, chunked prefill, published calibration;
- the build: which checkpoint it starts from, the parameters, the builder that writes the
  artifact, and the distribution whose version keys the artifact;
- serving: the engine's constructor arguments read back from the artifact's files, the
  replica's placement, and the engine class itself.

Nothing here imports Ray, serve/ or build/: the planner imports the facts.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from orchestrator.engines.features import with_implied
from orchestrator.errors import MissingExtraError, UserError

if TYPE_CHECKING:
    from orchestrator.config import NodeTypeSpec
    from orchestrator.engines.base import Engine
    from orchestrator.planner.plan import NodePlan, Plan

Sources = Callable[[str], "str | None"]  # checkpoint kind -> path, or None where unknown


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


class BuildSpec(BaseModel):
    """What one node type's build does, derived from the plan (never re-planned)."""

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
        from orchestrator.backends import get_backend

        return get_backend(self.backend).describe(self)


def dist_version(*dists: str) -> str | None:
    """The installed version of the first of `dists` that is installed."""
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def need_source(spec: BuildSpec) -> str:
    if spec.source is None:
        raise UserError(f"{spec.node_type}: no {spec.source_kind} checkpoint; set "
                        f"artifacts.sources.{spec.source_kind} in the cluster spec")
    return spec.source


class Backend:
    """Subclasses set the facts as class attributes and implement the build and serve
    methods; one instance of each sits in the registry (backends/__init__.py)."""

    id: ClassVar[str]
    display: ClassVar[str]
    extra: ClassVar[str]  # pip extra that installs it
    dists: ClassVar[tuple[str, ...]]  # distributions whose version keys the artifact
    gpu_support: ClassVar[dict[str, int]]  # precision id -> minimum compute capability
    cpu_support: ClassVar[frozenset[str]] = frozenset()
    # CPU support that a node type must ask for by name (`backends: [...]`): the default
    # CPU path stays llama.cpp, which needs no extra install.
    cpu_opt_in: ClassVar[bool] = False
    parallelism: ClassVar[str]  # how it spreads one replica over several GPUs: tensor | layer
    overhead_gib_per_gpu: ClassVar[float]
    overhead_gib_cpu: ClassVar[float] = 0.0
    max_batch: ClassVar[int]  # concurrent sequences one replica decodes together
    # KV-cache element types this backend can keep, least lossy first, in bytes per element
    # (the planner tries them in this order until min_context fits)
    kv_bytes: ClassVar[dict[str, float]] = {"fp16": 2.0, "fp8": 1.0}
    # other names a spec may give one of them (llama.cpp's 8-bit cache is q8_0)
    kv_aliases: ClassVar[dict[str, str]] = {}
    chunked_prefill: ClassVar[bool]
    # The checkpoint formats (models/checkpoints.py) each precision is served from as they
    # are, best first; and the format a build quantizes a precision from, which the node
    # type's GPUs must hold unquantized (the quantizer loads the whole model). Where a spec
    # names its checkpoints, the planner offers only what these can start from.
    loads: ClassVar[dict[str, tuple[str, ...]]] = {}
    quantizes_from: ClassVar[dict[str, str]] = {}
    checks_checkpoints: ClassVar[bool] = True  # False: serves whatever it is pointed at
    calibration: ClassVar[tuple[Calibration, ...]] = ()
    calibration_from: ClassVar[str | None] = None  # borrow another backend's fit
    notes: ClassVar[str] = ""
    # The request features (engines/features.py) its engine honours, and why it does not
    # honour others where there is more to say than "not implemented" (docs/serving.md).
    features: ClassVar[frozenset[str]] = frozenset()
    feature_notes: ClassVar[dict[str, str]] = {}
    fronts_upstream: ClassVar[bool] = False  # serves through a node type's `upstream`
    engine_class: ClassVar[str]  # "module:Class", imported only where a replica runs it

    # -- facts ---------------------------------------------------------------------------
    def honours(self) -> frozenset[str]:
        """Every request feature a pool on this backend honours."""
        return with_implied(self.features)

    def min_sm(self, precision_id: str) -> int | None:
        return self.gpu_support.get(precision_id)

    def offers(self, precision_id: str, *, cpu: bool, opted_in: bool = False) -> bool:
        if cpu:
            return precision_id in self.cpu_support and (opted_in or not self.cpu_opt_in)
        return precision_id in self.gpu_support

    def kv_cache_types(self, override: str | None = None) -> list[str]:
        """The cache types to try, least lossy first: all of ours, or the override alone
        (an alias resolved; a type we do not keep stays, for kv_unsupported to name)."""
        if override is None or override == "auto":
            return list(self.kv_bytes)
        return [self.kv_aliases.get(override, override)]

    def kv_unsupported(self, kv: str, hw) -> str | None:
        """Why this backend cannot keep its KV cache as ``kv`` on ``hw`` (a NodeHardware),
        or None. An FP8 cache needs FP8 tensor cores (sm89+), as the engines' kernels do."""
        if kv not in self.kv_bytes:
            return (f"{self.display} keeps no {kv} KV cache (it keeps "
                    f"{', '.join(self.kv_bytes)})")
        if kv == "fp8" and (hw.is_cpu or not hw.gpu.fp8):
            where = "CPU" if hw.is_cpu else f"{hw.gpu.id} ({hw.gpu.arch})"
            return f"an FP8 KV cache on {self.display} needs FP8 tensor cores (sm89+); {where}"
        return None

    def loads_as(self, precision_id: str, kind: str) -> str:
        """How this backend serves ``precision_id`` from a ``kind`` checkpoint, in words."""
        return f"{self.display} loads"

    def check_node(self, node: NodeTypeSpec) -> str | None:
        """Why a node type that lists this backend is not valid for it, or None."""
        return None

    def concurrency(self, kv_tokens: int, typical_sequence: int, min_context: int) -> int:
        """Sequences the planner expects one replica to decode together."""
        return max(1, min(self.max_batch, kv_tokens // typical_sequence))

    def replica_batch(self, choice) -> int:
        """Sequences one replica of this plan decodes together at most (the router's and
        Serve's bound); a backend that sizes its batch per plan returns the plan's."""
        return self.max_batch

    # -- build ---------------------------------------------------------------------------
    def build_params(self, n: NodePlan, plan: Plan, node: NodeTypeSpec,
                     sources: Sources) -> tuple[str, dict]:
        """The checkpoint kind the build starts from and the backend's parameters."""
        raise NotImplementedError

    def describe(self, spec: BuildSpec) -> str:
        return f"load {spec.source_kind} checkpoint, TP {spec.tp}"

    def version(self) -> str:
        v = dist_version(*self.dists)
        if v is None:
            raise MissingExtraError(self.dists[0], self.extra)
        return v

    def build(self, spec: BuildSpec, out: Path, cache: Path | None = None) -> list[str]:
        """Write the artifact into the fresh directory `out`; return notes for the
        manifest. The runner hashes and commits what is there. `cache`: a directory of the
        store's that outlives builds (a compiled binary several artifacts share)."""
        raise NotImplementedError

    # -- serve ---------------------------------------------------------------------------
    def serving_context(self, n: NodePlan) -> int:
        """Tokens one sequence may hold on a replica of this pool."""
        return n.choice.memory.max_context

    def engine_args(self, n: NodePlan, model: str, artifact: Path | None) -> dict:
        """The engine's constructor arguments, read from the artifact. Runs in the replica,
        on its node, once the artifact is there."""
        raise NotImplementedError

    def placement(self, n: NodePlan) -> tuple[dict, list[dict]]:
        """Ray actor options and placement-group bundles for one replica."""
        res = dict(n.choice.replica_resources)
        gpus = res.pop("GPU", 0.0)
        cpus = res.pop("CPU", 1.0)
        first = {"CPU": cpus, **res, **({"GPU": gpus} if gpus else {})}
        return {"num_cpus": cpus, "num_gpus": gpus, "resources": res}, [first]

    def make_engine(self, **kwargs) -> Engine:
        module, cls = self.engine_class.split(":")
        return getattr(importlib.import_module(module), cls)(**kwargs)
