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
                                      default_store, source_digest)


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
    no_node: bool = False  # no node of this type in the cluster yet


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


def _announce(key: str) -> None:
    try:
        import ray

        if ray.is_initialized():
            from orchestrator.build.transfer import announce

            announce(key)
    except Exception:  # a build outside Ray (a test, a GPU check) has no peers to tell
        pass


def execute(spec: BuildSpec, store_root: str | None, force: bool = False,
            origin: tuple[str, str] | None = None) -> BuildOutcome:
    """Build one node type's artifact here (inside its Ray task), or find it cached. The
    store is `store_root` where every node shares one, else this node's own. `origin`
    (node id, digest): where the source is when this node has no such path."""
    t0 = time.perf_counter()
    store = ArtifactStore(store_root or default_store())
    fetched = []
    if spec.source and origin and not Path(spec.source).exists():
        from orchestrator.build.transfer import fetch_source

        local = fetch_source(spec.source, origin[0], origin[1], store.root)
        fetched = [f"source {Path(spec.source).name} fetched from node {origin[0][:8]} "
                   "through Ray"]
        spec = spec.model_copy(update={"source": str(local)})
    builder = get_backend(spec.backend)
    version = builder.version()
    digest = source_digest(spec.source, store.root / ".cache") if spec.source else "none"
    inputs = inputs_of(spec, version, digest)
    key = build_key(inputs)
    where = dict(node_id=_node_id(), host=socket.gethostname())
    if store.has(key) and not force:
        _announce(key)
        return BuildOutcome(node_type=spec.node_type, ok=True, cached=True, key=key,
                            path=str(store.path(key)), seconds=time.perf_counter() - t0,
                            **where)
    tmp = store.new_tmp(key)
    try:
        # The node's own cache, whatever store this build writes to: a compiled binary is
        # content-addressed, so every store on the node shares one compile.
        notes = fetched + builder.build(spec, tmp, default_store() / ".cache")
        files = {str(p.relative_to(tmp)): FileEntry.of(p)
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
    _announce(key)
    return BuildOutcome(node_type=spec.node_type, ok=True, key=key, path=str(path),
                        seconds=time.perf_counter() - t0, **where)


def origin_of(spec: BuildSpec) -> tuple[str, str] | None:
    """This node and the source's digest, for a build node without the source's path."""
    if not spec.source or not Path(spec.source).exists():
        return None
    from orchestrator.build.transfer import node_id

    return node_id(), source_digest(spec.source, default_store() / ".cache")


def build_node(resource: str) -> str | None:
    """A live node that advertises `resource` (a node type's gpu_group)."""
    import ray

    nodes = sorted(n["NodeID"] for n in ray.nodes()
                   if n.get("Alive") and n["Resources"].get(resource, 0) >= 1)
    return nodes[0] if nodes else None


def run_builds(specs: list[BuildSpec], store_root: str | Path | None, *, force: bool = False,
               on_update: Callable[[BuildOutcome], None] = lambda o: None) -> list[BuildOutcome]:
    """Submit every build as a Ray task on its node type (Ray must be initialized)."""
    import ray

    from orchestrator.build.transfer import on_node

    task = ray.remote(execute)
    pending, outcomes = {}, {}
    for spec in specs:
        node = build_node(spec.resource)
        if node is None:
            outcomes[spec.node_type] = BuildOutcome(
                node_type=spec.node_type, ok=False, no_node=True,
                error=f"no node advertises {spec.resource}: on a node of this type run "
                      f"`orchestrator node-resources --cluster SPEC` and `ray start` with "
                      f"its flags")
            on_update(outcomes[spec.node_type])
            continue
        # Pinned to a node of the type, holding neither its gpu_group unit nor a CPU: a
        # serving pool's placement groups hold those, and a re-plan builds beside them.
        ref = task.options(**{**on_node(node), "num_gpus": spec.gpus, "num_cpus": 0,
                              "max_retries": 0, "name": f"build:{spec.node_type}"}).remote(
            spec, str(store_root) if store_root else None, force, origin_of(spec))
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


def require_transferred(transfers: list["Transfer"]) -> None:
    failed = [t for t in transfers if not t.ok]
    if failed:
        raise BuildFailed(f"{len(failed)} of {len(transfers)} nodes did not get their "
                          "artifact (their replicas pull it again when they start): "
                          + "; ".join(f"{t.node_type} on {t.node_id[:8]}: {t.error}"
                                      for t in failed))


def require_built(outcomes: list[BuildOutcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise BuildFailed(f"{len(failed)} of {len(outcomes)} builds failed: "
                          + "; ".join(f"{o.node_type}: {o.error}" for o in failed))


def build_on(spec, address: str | None, specs: list[BuildSpec], store_root: str | Path | None,
             *, force: bool = False,
             on_update: Callable[[BuildOutcome], None] = lambda o: None,
             on_progress: Callable[[str, str, int, int], None] = lambda *a: None,
             step: Callable[[str], None] = lambda line: None,
             ) -> tuple[list[BuildOutcome], list[Transfer]]:
    """`run_builds` on the Ray cluster at `address`, or on a local one standing in for
    `spec` for as long as this takes (serve/ray_local.py); then every other node of each
    node type gets the artifact (`distribute`). `step` hears each phase as it begins."""
    from orchestrator.serve.ray_local import join_or_start

    step(f"joining the Ray cluster at {address}" if address else
         f"starting a local Ray standing in for {spec.name!r}")
    join_or_start(spec, address)
    step(f"building {len(specs)} node type(s), each on a node of its type")
    outcomes = run_builds(specs, store_root, force=force, on_update=on_update)
    if not store_root and any(o.ok for o in outcomes):
        step("every other node of each type pulls its artifact from a peer")
    return outcomes, distribute(specs, outcomes, store_root, on_progress)


class Transfer(BaseModel):
    """One node's copy of its node type's artifact: pulled from a peer, or already there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_type: str
    node_id: str
    ok: bool
    source: str = ""  # the peer it came from; "" where the node had it
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def _pull_here(key: str, root: str | None):
    from orchestrator.build.transfer import Pulled, pull_steps

    for step in pull_steps(key, root):
        yield step if isinstance(step, Pulled) else tuple(step)


def distribute(specs: list[BuildSpec], outcomes: list[BuildOutcome],
               store_root: str | Path | None,
               on_progress: Callable[[str, str, int, int], None] = lambda *a: None
               ) -> list[Transfer]:
    """Every other live node of each built node type pulls the artifact from a peer, all
    at once (a shared store needs none of this). on_progress(node type, node id, bytes
    done, bytes in all) as the chunks arrive."""
    import ray

    from orchestrator.build.transfer import Pulled, on_node

    if store_root:
        return []
    built = {o.node_type: o for o in outcomes if o.ok}
    task = ray.remote(_pull_here)
    running = []
    for spec in specs:
        o = built.get(spec.node_type)
        if o is None:
            continue
        for n in ray.nodes():
            if (n.get("Alive") and n["Resources"].get(spec.resource, 0) > 0
                    and n["NodeID"] != o.node_id):
                gen = task.options(**on_node(n["NodeID"]), num_returns="streaming").remote(
                    o.key, None)
                running.append((spec.node_type, n["NodeID"], gen))
    out = []
    for node_type, node, gen in running:
        try:
            for ref in gen:
                step = ray.get(ref)
                if isinstance(step, Pulled):
                    out.append(Transfer(node_type=node_type, node_id=node, ok=True,
                                        source=step.source, bytes=step.bytes,
                                        seconds=step.seconds))
                else:
                    on_progress(node_type, node, *step)
        except Exception as e:  # one node failing loses no other; its replica pulls again
            cause = getattr(e, "cause", None) or e
            out.append(Transfer(node_type=node_type, node_id=node, ok=False,
                                error=f"{type(cause).__name__}: {cause}"))
    return out
