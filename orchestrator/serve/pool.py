"""One pool per node type: a Serve deployment whose replicas each run one engine on one
GPU group (claimed through the replica's placement group).

A replica verifies its artifact and loads its engine in its (async) constructor, so Serve
lists it only once the model is loaded and has decoded a token; `up` and `/health` wait for
that, and a load that fails fails the pool with its reason (loads.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import AsyncIterator

import ray
from ray import serve

from orchestrator.backends import get_backend, serving_backend
from orchestrator.engines.base import (Chunk, EngineFault, GenerateRequest, RequestError,
                                       context_too_long)
from orchestrator.errors import MissingExtraError
from orchestrator.serve import loads
from orchestrator.serve.contract import LoadRecord, PoolConfig, PoolRequest, TokenizeRequest

log = logging.getLogger("ray.serve")


class PoolLoadError(RuntimeError):
    """A replica could not load its engine; the message is the reason `up` shows."""


def node_arch() -> str:
    """This node's GPU architecture (sm86, ...), or cpu where NVML sees no GPU."""
    from orchestrator.hardware.discovery import discover

    inv = discover()
    return "cpu" if inv.cpu_only else "sm" + inv.gpus[0].compute_capability.replace(".", "")


def local_artifact(ref: str, store: str | None) -> Path:
    """This node's copy of the artifact: `ref` is a key in the store (`store`, or the
    node's own) or an artifact directory. Missing here, it is pulled from a peer through
    Ray (build/transfer.py), so a replica never needs a shared filesystem."""
    from orchestrator.build.transfer import pull

    root, key = (str(Path(ref).parent), Path(ref).name) if Path(ref).is_absolute() \
        else (store, ref)
    pulled = pull(key, root)
    if pulled.source:
        log.info("pulled artifact %s from node %s: %.1f MB at %.1f MB/s", key,
                 pulled.source[:8], pulled.bytes / 1e6, pulled.mb_per_s)
    from orchestrator.build.store import ArtifactStore, default_store

    return ArtifactStore(root or default_store()).path(key)


def build_here(deferred, store: str | None) -> Path:
    """The artifact of a pool whose node type joined after `up`: built on this node now
    (or found in its store), its source fetched from the machine that ran `up`."""
    from orchestrator.build.runner import execute

    o = execute(deferred.build, store, origin=deferred.origin)
    log.info("%s artifact %s on this node in %.1f s", "found" if o.cached else "built",
             o.key, o.seconds)
    return Path(o.path)


def verify_artifact(path: Path, backend: str) -> None:
    """Digest, architecture and backend version of the artifact this replica will load:
    a CPU artifact (a GGUF for llama.cpp on CPU) loads anywhere; one built for a GPU
    architecture loads only on a node with that architecture."""
    from orchestrator.build.store import ArtifactStore, check_artifact

    store = ArtifactStore(path.parent)
    arch = None if store.manifest(path.name).arch == "cpu" else node_arch()
    check_artifact(store, path.name, arch=arch,
                   backend_version=get_backend(backend).version())


def load_failure(e: BaseException) -> str:
    """The reason a load failed, in words an operator can act on."""
    from orchestrator.build.store import ArtifactError

    if isinstance(e, (MissingExtraError, ArtifactError)):
        return str(e)
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return f"out of memory loading the engine: {str(e)[:200]}"
    return f"{type(e).__name__}: {str(e)[:300]}"


class Pool:
    """Constructed by Serve in each replica with the pool's config."""

    async def __init__(self, config: PoolConfig):
        self.config = config
        self.node_id = ray.get_runtime_context().get_node_id()
        self.max_context = config.max_context
        self.stall_s = config.stall_s
        self.pinned_waiting = 0  # pinned requests not yet past their first token
        ctx = serve.get_replica_context()
        self.app, self.dep = ctx.app_name, ctx.deployment
        self.replica = ctx.replica_id.unique_id
        self._crash_log = loads.watch_crashes(f"{self.app}:{self.dep}")
        crashed = loads.collect_crashes(f"{self.app}:{self.dep}")
        earlier = {r.pid: r for r in loads.records(self.app, self.dep)} if crashed else {}
        for pid, reason in crashed:
            was = earlier.get(pid)
            if was is None:  # a replica of an earlier deployment or cluster: not this one's
                continue
            log.error("an earlier replica of %s (pid %d) died: %s", self.dep, pid, reason)
            # its own "loading" or "ready" record becomes the failure
            loads.record(self.app, self.dep, LoadRecord(was.replica, pid, "failed",
                                                        was.started_at, reason=reason))
        started = time.time()
        loads.record(self.app, self.dep, LoadRecord(self.replica, os.getpid(), "loading",
                                                    started))
        t0 = time.perf_counter()
        try:
            path = None
            if config.artifact:
                path = await asyncio.to_thread(local_artifact, config.artifact, config.store)
            elif config.deferred is not None:
                path = await asyncio.to_thread(build_here, config.deferred, config.store)
            if path is not None:
                verify_artifact(path, config.backend)
            runs = serving_backend(config.engine, config.time_scale)
            self.engine = runs.make_engine(**runs.engine_args(config.node_plan, config.model,
                                                             path))
            await self.engine.start()
        except Exception as e:
            reason = load_failure(e)
            log.error("%s failed to load: %s", self.dep, reason)
            loads.record(self.app, self.dep, LoadRecord(self.replica, os.getpid(), "failed",
                                                        started, reason=reason))
            raise PoolLoadError(f"{config.pool}: {reason}") from None
        loads.record(self.app, self.dep, LoadRecord(self.replica, os.getpid(), "ready",
                                                    started, time.perf_counter() - t0))
        self.loaded = True

    def __del__(self):
        # A loaded replica stopped on purpose (scaled down, redeployed) is no restart; a
        # failed load keeps its record (Serve calls this after a constructor raised, too).
        if getattr(self, "loaded", False):
            loads.forget(self.app, self.dep, self.replica)
        # an engine that runs a server process of its own stops it now, by process id
        terminate = getattr(getattr(self, "engine", None), "terminate", None)
        if terminate is not None:
            terminate()

    def _prepare(self, req: PoolRequest) -> GenerateRequest:
        chat = req.prompt is None
        prompt = self.engine.render_chat(req.messages, req.tools) if chat else req.prompt
        n_prompt = self.engine.count_tokens(prompt, rendered_chat=chat)
        if n_prompt + req.max_tokens > self.max_context:
            raise context_too_long(n_prompt, req.max_tokens, self.max_context)
        return GenerateRequest(
            request_id=req.request_id, prompt=prompt, max_tokens=req.max_tokens,
            temperature=req.temperature, top_p=req.top_p, stop=tuple(req.stop),
            seed=req.seed, presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty, logit_bias=req.logit_bias,
            logprobs=req.logprobs, json_schema=req.json_schema, prompt_tokens=n_prompt,
            rendered_chat=chat)

    async def generate(self, req: PoolRequest) -> AsyncIterator[Chunk]:
        """Stream the engine's chunks; every one carries the token counts so far."""
        try:
            gen = self._prepare(req)
        except RequestError:
            raise
        except Exception as e:  # tokenizing or templating failed in the engine itself
            log.error("%s: preparing %s failed: %r", self.dep, req.request_id, e)
            raise EngineFault(f"{type(e).__name__} while preparing the prompt") from None
        pinned = req.pinned
        self.pinned_waiting += pinned
        try:
            async for c in self.engine.generate(gen):
                if pinned:
                    self.pinned_waiting -= 1
                    pinned = False
                yield c
        finally:
            self.pinned_waiting -= pinned

    async def tokenize(self, req: TokenizeRequest) -> list[int]:
        """The prompt's token ids as `generate` counts them (a chat rendered with the same
        template first): the ingress routes on their count and their block hashes. A
        template that refuses the messages raises the same RequestError generation would."""
        chat = req.prompt is None
        prompt = self.engine.render_chat(req.messages, req.tools) if chat else req.prompt
        return self.engine.tokenize(prompt, rendered_chat=chat)

    async def record_routing_stats(self) -> dict:
        """Called by Serve every request_routing_stats_period_s; reaches the router."""
        return {**self.engine.stats().model_dump(), "node_id": self.node_id,
                "pool": self.config.pool, "pid": os.getpid()}

    async def record_autoscaling_stats(self) -> dict:
        """Called by Serve every metrics interval; reaches the autoscaling policy
        (serve/autoscaler.py) as aggregated custom metrics."""
        st = self.engine.stats()
        return {"running": float(st.running), "waiting": float(st.waiting),
                "waiting_pinned": float(min(self.pinned_waiting, st.waiting)),
                "waiting_prefill_tokens": float(st.waiting_prefill_tokens)}

    async def info(self) -> dict:
        return {"node_id": self.node_id, "pool": self.config.pool,
                "precision": self.config.precision, "pid": os.getpid()}

    async def check_health(self) -> None:
        """Serve calls this every few seconds and replaces the replica when it raises."""
        self.engine.health(self.stall_s)
