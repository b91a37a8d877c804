"""A simulated replica: continuous batching timed by the planner's performance model.

Phases (each ends with a wake-up event):
- prefill (backends that do not chunk it): the admitted prompts are processed together,
  compute-bound, while the running decodes stall;
- step with a prefill chunk (backends that chunk, like vLLM V1): one iteration decodes every
  running sequence and processes up to ``CHUNK_TOKENS`` prompt tokens beside them;
- decode: ``k`` iterations of the whole batch at once, ``k`` = tokens until the next
  sequence finishes; an arrival cuts the run short at the next iteration boundary.
Admission reserves prompt + output tokens of KV cache, so a replica never exceeds it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from orchestrator.defaults import LOAD_WINDOW_S
from orchestrator.router.context import ReplicaView

CHUNK_TOKENS = 2048  # vLLM's default token budget per iteration with chunked prefill


@dataclass
class SimRequest:
    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int
    pinned_precision: str | None = None
    replica: str | None = None
    pool: str | None = None
    precision: str | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    rejected: str | None = None
    generated: int = 0
    prefill_left: int = 0

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


@dataclass
class SimReplica:
    view: ReplicaView  # static fields from the plan; load fields kept current here
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)  # decoding
    prefilling: list = field(default_factory=list)  # admitted, prompt not yet done
    phase: str = "idle"
    phase_start: float = 0.0
    phase_end: float = 0.0
    step_s: float = 0.0
    steps: int = 0
    version: int = 0
    peak_kv: int = 0
    load_at: float = 0.0

    # -- the router's view -----------------------------------------------------------
    def snapshot(self) -> ReplicaView:
        v = self.view
        v.running = len(self.running) + len(self.prefilling)
        v.waiting = len(self.waiting)
        return v

    # -- events ----------------------------------------------------------------------
    def enqueue(self, req: SimRequest, now: float) -> float | None:
        """Queue a routed request; returns a new wake-up time if the replica must re-plan."""
        self._note_load(req.prompt_tokens, now)
        self.waiting.append(req)
        self.view.waiting_prefill_tokens += req.prompt_tokens
        self.view.waiting_output_tokens += req.max_tokens
        if self.phase == "idle":
            return self.plan(now)
        if self.phase == "decode" and self.steps > 1:
            done = int((now - self.phase_start) / self.step_s)
            if done + 1 < self.steps:
                self.steps = done + 1
                self.phase_end = self.phase_start + self.steps * self.step_s
                self.version += 1
                return self.phase_end
        return None

    def wake(self, now: float, finished: list[SimRequest]) -> float | None:
        """The current phase ended at ``now``: apply it, then plan the next one."""
        getattr(self, f"_end_{self.phase}")(now, finished)
        return self.plan(now)

    def _note_load(self, tokens: int, now: float) -> None:
        # Exponentially weighted prompt tokens per second over about LOAD_WINDOW_S, the
        # figure a live replica reports in its routing stats.
        v = self.view
        decay = math.exp(-(now - self.load_at) / LOAD_WINDOW_S)
        v.prefill_load_tokens_per_s = v.prefill_load_tokens_per_s * decay + tokens / LOAD_WINDOW_S
        self.load_at = now

    # -- planning --------------------------------------------------------------------
    def plan(self, now: float) -> float | None:
        self._admit()
        sp, v = self.view.speeds, self.view
        if self.prefilling and not v.chunked_prefill:
            tokens = sum(r.prefill_left for r in self.prefilling)
            return self._start("prefill", now, tokens / sp.prefill_tokens_per_s(), 1)
        if self.prefilling:
            chunk = max(CHUNK_TOKENS - len(self.running), 1)
            mem = (sp.weights_bytes + v.running_context_tokens * sp.kv_bytes_per_token) \
                / sp.bandwidth_bytes_s
            work = min(chunk, sum(r.prefill_left for r in self.prefilling))
            compute = (len(self.running) + work) * sp.flops_per_token / sp.flops_s
            self._chunk = work
            return self._start("chunk", now, max(mem, compute), 1)
        if self.running:
            k = min(r.output_tokens - r.generated for r in self.running)
            batch = len(self.running)
            ctx = v.running_context_tokens / batch + k / 2
            return self._start("decode", now, sp.decode_step_s(batch, ctx), k)
        self.phase = "idle"
        return None

    def _start(self, phase, now, step_s, steps) -> float:
        self.phase, self.phase_start, self.step_s, self.steps = phase, now, step_s, steps
        self.phase_end = now + step_s * steps
        self.version += 1
        return self.phase_end

    def _admit(self) -> None:
        v = self.view
        while self.waiting:
            r = self.waiting[0]
            need = r.prompt_tokens + r.max_tokens
            if len(self.running) + len(self.prefilling) >= v.max_batch:
                break
            if v.kv_used_tokens + need > v.kv_capacity_tokens:
                break
            self.waiting.popleft()
            v.waiting_output_tokens -= r.max_tokens
            v.kv_used_tokens += need
            self.peak_kv = max(self.peak_kv, v.kv_used_tokens)
            r.prefill_left = r.prompt_tokens
            self.prefilling.append(r)

    # -- phase ends ------------------------------------------------------------------
    def _first_token(self, r: SimRequest, now: float, finished) -> None:
        self.view.waiting_prefill_tokens -= r.prefill_left
        r.first_token_s, r.generated, r.prefill_left = now, 1, 0
        self.view.running_context_tokens += r.prompt_tokens + 1
        if r.generated >= r.output_tokens:
            self._finish(r, now, finished)
        else:
            self.view.decode_tokens_left += r.output_tokens - 1
            self.running.append(r)

    def _finish(self, r: SimRequest, now: float, finished) -> None:
        r.finish_s = now
        self.view.kv_used_tokens -= r.prompt_tokens + r.max_tokens
        self.view.running_context_tokens -= r.prompt_tokens + r.generated
        finished.append(r)

    def _end_prefill(self, now, finished) -> None:
        done, self.prefilling = self.prefilling, []
        for r in done:
            self._first_token(r, now, finished)

    def _end_chunk(self, now, finished) -> None:
        self._decode(1, now, finished)
        budget = self._chunk
        still = []
        for r in self.prefilling:
            take = min(budget, r.prefill_left)
            r.prefill_left -= take
            self.view.waiting_prefill_tokens -= take
            budget -= take
            if r.prefill_left == 0:
                self._first_token(r, now, finished)
            else:
                still.append(r)
        self.prefilling = still

    def _end_decode(self, now, finished) -> None:
        self._decode(self.steps, now, finished)

    def _decode(self, k: int, now: float, finished) -> None:
        if not self.running:
            return
        v = self.view
        v.decode_tokens_left -= k * len(self.running)
        v.running_context_tokens += k * len(self.running)
        keep = []
        for r in self.running:
            r.generated += k
            if r.generated >= r.output_tokens:
                self._finish(r, now, finished)
            else:
                keep.append(r)
        self.running = keep

    def _end_idle(self, now, finished) -> None:
        pass
