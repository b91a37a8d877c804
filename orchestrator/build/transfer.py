"""Artifacts move between nodes through Ray, so no node needs a shared filesystem.

Every node keeps its own store (`default_store()`: $ORCHESTRATOR_STORE or
~/.cache/orchestrator/artifacts). A node that builds or receives an artifact announces
itself as a holder in Ray's key-value store; a node that needs one pulls it from a live
holder in chunks, each a Ray task pinned to the holder's node, into a partial directory it
keeps across attempts (a pull that stops half-way goes on from where it stopped), checks
every file against the manifest's sha256 and commits it into its own store.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from orchestrator.build.store import (TMP_PREFIX, ArtifactError, ArtifactStore, Manifest,
                                      default_store, restore_modes, sha256_file)

CHUNK_BYTES = 8 << 20  # per Ray task: large enough to amortize a call, small enough to resume
KV_NAMESPACE = "orchestrator-artifacts"


def _kv():
    from ray.experimental import internal_kv

    return internal_kv


def _holders_key(key: str) -> bytes:
    return f"holders:{key}".encode()


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def announce(key: str) -> None:
    """This node holds `key` (called where it was built, cached or pulled)."""
    kv = _kv()
    raw = kv._internal_kv_get(_holders_key(key), namespace=KV_NAMESPACE)
    held = set(json.loads(raw)) if raw else set()
    if node_id() not in held:
        held.add(node_id())
        kv._internal_kv_put(_holders_key(key), json.dumps(sorted(held)), overwrite=True,
                            namespace=KV_NAMESPACE)


def holders(key: str) -> list[str]:
    """Live nodes that announced `key`."""
    import ray

    raw = _kv()._internal_kv_get(_holders_key(key), namespace=KV_NAMESPACE)
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    return [n for n in (json.loads(raw) if raw else []) if n in alive]


def _store(root: str | None) -> ArtifactStore:
    return ArtifactStore(root or default_store())


def _read_manifest(root: str | None, key: str) -> tuple[str, str]:
    """The holder's manifest of `key` and where the artifact is on the holder."""
    store = _store(root)
    return store.manifest(key).model_dump_json(), str(store.path(key))


def _read_file(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _copy(node: str, remote: str, dest: Path, size: int) -> Iterator[int]:
    """Append `remote` (a file on `node`) to `dest` from where `dest` ends, a chunk per Ray
    task, yielding each chunk's length: a copy that stopped goes on where it stopped."""
    import ray

    read = ray.remote(_read_file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = dest.stat().st_size if dest.exists() else 0
    if have > size:
        dest.unlink()
        have = 0
    with open(dest, "ab") as f:
        while have < size:
            data = ray.get(read.options(**on_node(node)).remote(
                remote, have, min(CHUNK_BYTES, size - have)))
            if not data:
                raise ArtifactError(f"{remote} ended at {have} bytes on node {node[:8]}")
            f.write(data)
            have += len(data)
            yield len(data)


def on_node(node: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"num_cpus": 0, "max_retries": 1,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


@dataclass(frozen=True)
class Pulled:
    key: str
    source: str  # the holder's node id ("" where the artifact was already here)
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def pull_steps(key: str, root: str | None = None) -> Iterator[tuple[int, int] | Pulled]:
    """Bring `key` into this node's store: (bytes done, bytes in all) as it goes, then a
    Pulled. ArtifactError where no live node holds it or every holder failed."""
    import ray

    store = _store(root)
    if store.has(key):
        announce(key)
        yield Pulled(key, "", 0, 0.0)
        return
    here = node_id()
    peers = [n for n in holders(key) if n != here]
    if not peers:
        raise ArtifactError(f"artifact {key} is on no live node: build it (orchestrator "
                            "build --address ...) on a node of this type")
    read_manifest = ray.remote(_read_manifest)
    errors = []
    for peer in peers:
        t0, moved = time.perf_counter(), 0
        try:
            raw, there = ray.get(read_manifest.options(**on_node(peer)).remote(root, key))
            manifest = Manifest.model_validate_json(raw)
            total = sum(f.bytes for f in manifest.files.values())
            partial = store.root / f"{TMP_PREFIX}pull-{key}"  # the same on every attempt
            done = 0
            for rel, entry in sorted(manifest.files.items()):
                dest = partial / rel
                kept = dest.stat().st_size if dest.exists() else 0
                done += kept if kept <= entry.bytes else 0  # _copy restarts a longer one
                for n in _copy(peer, f"{there}/{rel}", dest, entry.bytes):
                    done, moved = done + n, moved + n
                    yield done, total
                if sha256_file(dest) != entry.sha256:
                    dest.unlink()
                    raise ArtifactError(f"{rel} arrived with another sha256 than the "
                                        "manifest's; removed, the next pull fetches it again")
            restore_modes(partial, manifest)
            store.commit(partial, manifest)
            announce(key)
            yield Pulled(key, peer, moved, time.perf_counter() - t0)
            return
        except Exception as e:  # the next holder, then give up naming every failure
            errors.append(f"{peer[:8]}: {type(e).__name__}: {e}")
    raise ArtifactError(f"could not pull artifact {key}: " + "; ".join(errors))


def pull(key: str, root: str | None = None,
         progress: Callable[[int, int], None] = lambda done, total: None) -> Pulled:
    for step in pull_steps(key, root):
        if isinstance(step, Pulled):
            return step
        progress(*step)
    raise AssertionError("pull_steps ended without a result")


def _list_source(path: str) -> list[tuple[str, int]]:
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return [(str(f.relative_to(p.parent)), f.stat().st_size) for f in files]


def fetch_source(path: str, origin: str, digest: str, root: Path) -> Path:
    """A checkpoint or GGUF source that is not on this node, copied from the node that
    named it (the one `build` or `up` ran on) into <store>/.sources/<digest>/, resumable,
    and checked against the digest that node computed. Already there: no copy."""
    import ray

    from orchestrator.build.store import source_digest

    final = root / ".sources" / digest / Path(path).name
    if final.exists() and source_digest(final) == digest:
        return final
    listing = ray.get(ray.remote(_list_source).options(**on_node(origin)).remote(path))
    for rel, size in listing:
        for _ in _copy(origin, str(Path(path).parent / rel), root / ".sources" / digest / rel,
                       size):
            pass
    got = source_digest(final)
    if got != digest:
        shutil.rmtree(root / ".sources" / digest, ignore_errors=True)
        raise ArtifactError(f"source {path} arrived with digest {got[:12]}, its node said "
                            f"{digest[:12]}; removed, the next build fetches it again")
    return final


__all__ = ["CHUNK_BYTES", "Pulled", "announce", "fetch_source", "holders", "on_node", "pull",
           "pull_steps"]
