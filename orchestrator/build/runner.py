"""Run builds: each as a Ray task that needs its node type's gpu_group resource, so it
executes on a node of that type; all node types at once; one failing loses no other."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict

from orchestrator import __version__
from orchestrator.backends import BuildSpec, get_backend
from orchestrator.errors import BuildFailed
from orchestrator.build.store import (ArtifactStore, FileEntry, Manifest, build_key,
                                      sha256_file, source_digest)


class BuildOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_type: str
    ok: bool
    cached: bool = False
    key: str | None = None
    path: str | None = None
    seconds: float = 0.0
    node_id: str | None = None
    host: str | None = None
    error: str | None = None


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def inputs_of(spec: BuildSpec, backend_version: str, digest: str) -> dict:
    return {"model": spec.model, "source_kind": spec.source_kind, "source_digest": digest,
            "precision": spec.precision, "backend": spec.backend,
            "backend_version": backend_version, "arch": spec.arch, "tp": spec.tp,
            "params": spec.params}


def execute(spec: BuildSpec, store_root: str, force: bool = False) -> BuildOutcome:
    """Build one node type's artifact here (inside its Ray task), or find it cached."""
    t0 = time.perf_counter()
    store = ArtifactStore(store_root)
    builder = get_backend(spec.backend)
    version = builder.version()
    digest = source_digest(spec.source, store.root / ".cache") if spec.source else "none"
    inputs = inputs_of(spec, version, digest)
    key = build_key(inputs)
    where = dict(node_id=_node_id(), host=socket.gethostname())
    if store.has(key) and not force:
        return BuildOutcome(node_type=spec.node_type, ok=True, cached=True, key=key,
                            path=str(store.path(key)), seconds=time.perf_counter() - t0,
                            **where)
    tmp = store.new_tmp(key)
    try:
        notes = builder.build(spec, tmp)
        files = {str(p.relative_to(tmp)): FileEntry(sha256=sha256_file(p),
                                                    bytes=p.stat().st_size)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = Manifest(
            key=key, inputs=inputs, node_type=spec.node_type, backend=spec.backend,
            backend_version=version, arch=spec.arch, precision=spec.precision,
            model=spec.model, files=files,
            tool_versions={"orchestrator": __version__, builder.dists[0]: version},
            built_on=f"{where['host']} {where['node_id'] or ''}".strip(),
            built_at=time.time(), build_seconds=time.perf_counter() - t0, notes=notes)
        if force and store.has(key):
            old = store.path(key).rename(store.root / f".tmp-replaced-{key}-{time.time_ns()}")
            shutil.rmtree(old, ignore_errors=True)
        path = store.commit(tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildOutcome(node_type=spec.node_type, ok=True, key=key, path=str(path),
                        seconds=time.perf_counter() - t0, **where)


def run_builds(specs: list[BuildSpec], store_root: str | Path, *, force: bool = False,
               on_update: Callable[[BuildOutcome], None] = lambda o: None) -> list[BuildOutcome]:
    """Submit every build as a Ray task on its node type (Ray must be initialized)."""
    import ray

    available = ray.cluster_resources()
    task = ray.remote(execute)
    pending, outcomes = {}, {}
    for spec in specs:
        if available.get(spec.resource, 0) < 1:
            outcomes[spec.node_type] = BuildOutcome(
                node_type=spec.node_type, ok=False,
                error=f"no node advertises {spec.resource}: on a node of this type run "
                      f"`orchestrator node-resources --cluster SPEC` and `ray start` with "
                      f"its flags")
            on_update(outcomes[spec.node_type])
            continue
        ref = task.options(resources={spec.resource: 1}, num_gpus=spec.gpus, num_cpus=1,
                           name=f"build:{spec.node_type}", max_retries=0).remote(
            spec, str(store_root), force)
        pending[ref] = spec
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            spec = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # one node type failing must not stop the others
                cause = getattr(e, "cause", None) or e
                outcome = BuildOutcome(node_type=spec.node_type, ok=False,
                                       error=f"{type(cause).__name__}: {cause}")
            outcomes[spec.node_type] = outcome
            on_update(outcome)
    return [outcomes[s.node_type] for s in specs]


def require_built(outcomes: list[BuildOutcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise BuildFailed(f"{len(failed)} of {len(outcomes)} builds failed: "
                          + "; ".join(f"{o.node_type}: {o.error}" for o in failed))


def build_on(spec, address: str | None, specs: list[BuildSpec], store_root: str | Path, *,
             force: bool = False,
             on_update: Callable[[BuildOutcome], None] = lambda o: None) -> list[BuildOutcome]:
    """`run_builds` on the Ray cluster at `address`, or on a local one standing in for
    `spec` for as long as this takes (serve/ray_local.py)."""
    from orchestrator.serve.ray_local import join_or_start

    join_or_start(spec, address)
    return run_builds(specs, store_root, force=force, on_update=on_update)
