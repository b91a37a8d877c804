"""One pool per node type: a Serve deployment whose replicas each run one engine on one
GPU group (claimed through the replica's placement group)."""

from __future__ import annotations

import os
from typing import AsyncIterator

import ray

from orchestrator.engines import registry
from orchestrator.engines.base import EngineFault, GenerateRequest


class ContextTooLong(Exception):
    """prompt + max_tokens exceeds this pool's context (a user error, HTTP 400)."""

    def __init__(self, prompt: int, max_tokens: int, limit: int):
        self.prompt, self.max_tokens, self.limit = prompt, max_tokens, limit
        super().__init__(f"prompt {prompt} tokens + max_tokens {max_tokens} = "
                         f"{prompt + max_tokens} exceeds the context of {limit} tokens")


class Pool:
    """Constructed by Serve in each replica with the pool's config (plain data)."""

    def __init__(self, config: dict):
        self.config = config
        self.node_id = ray.get_runtime_context().get_node_id()
        self.engine = registry.make(config["engine"], **config["engine_args"])
        self.started = False
        self.max_context = config["max_context"]
        self.pinned_waiting = 0  # pinned requests not yet past their first token
        if config.get("fail_marker") and os.path.exists(config["fail_marker"]):
            raise RuntimeError("refusing to start: fail marker present")

    async def _ensure_started(self):
        if not self.started:
            await self.engine.start()
            self.started = True

    async def generate(self, payload: dict) -> AsyncIterator[dict]:
        """Stream chunks as plain dicts; the first one carries the token counts."""
        await self._ensure_started()
        prompt = payload.get("prompt")
        if prompt is None:
            prompt = self.engine.render_chat(payload["messages"])
        n_prompt = self.engine.count_tokens(prompt)
        max_tokens = payload["max_tokens"]
        if n_prompt + max_tokens > self.max_context:
            raise ContextTooLong(n_prompt, max_tokens, self.max_context)
        req = GenerateRequest(
            request_id=payload["request_id"], prompt=prompt, max_tokens=max_tokens,
            temperature=payload["temperature"], top_p=payload["top_p"],
            stop=tuple(payload.get("stop") or ()), seed=payload.get("seed"),
            prompt_tokens=n_prompt)
        pinned = bool(payload.get("pinned"))
        self.pinned_waiting += pinned
        try:
            async for c in self.engine.generate(req):
                if pinned:
                    self.pinned_waiting -= 1
                    pinned = False
                yield {"text": c.text, "completion_tokens": c.completion_tokens,
                       "prompt_tokens": c.prompt_tokens, "finish_reason": c.finish_reason}
        finally:
            self.pinned_waiting -= pinned

    async def record_routing_stats(self) -> dict:
        """Called by Serve every request_routing_stats_period_s; reaches the router."""
        stats = self.engine.stats().model_dump() if self.started else {}
        return {**stats, "node_id": self.node_id, "pool": self.config["pool"],
                "pid": os.getpid()}

    async def record_autoscaling_stats(self) -> dict:
        """Called by Serve every metrics interval; reaches the autoscaling policy
        (autoscale/serve_policy.py) as aggregated custom metrics."""
        st = self.engine.stats() if self.started else None
        return {"running": float(st.running if st else 0),
                "waiting": float(st.waiting if st else 0),
                "waiting_pinned": float(min(self.pinned_waiting, st.waiting if st else 0))}

    async def info(self) -> dict:
        return {"node_id": self.node_id, "pool": self.config["pool"],
                "precision": self.config["precision"], "pid": os.getpid()}

    async def check_health(self) -> None:
        if self.started and self.engine is None:
            raise EngineFault("engine gone")
