"""A simulated replica: continuous batching timed by the planner's performance model.

Phases (each ends with a wake-up event):
- prefill (backends that do not chunk it): the admitted prompts are processed together,
  compute-bound, while the running decodes stall;
- step with a prefill chunk (backends that chunk, like vLLM V1): one iteration decodes every
  running sequence and processes up to ``CHUNK_TOKENS`` prompt tokens beside them;
- decode: ``k`` iterations of the whole batch at once, ``k`` = tokens until the next
  sequence finishes; an arrival cuts the run short at the next iteration boundary.

Two kinds of state, kept apart so the router sees only what the live ingress could:
- the replica's truth: the true output lengths, its own prefix cache (blocks of the
  prompts it prefilled, least recently used evicted), the KV cache it really holds, and
  its true speed, off from the plan's by ``speed_factor`` and by seeded noise per phase;
- ``view``, what a live router knows (router/ledger.py): counts, the prompt tokens not yet
  started, and outputs as predicted when the request was routed, never the true ones. Its
  speed correction is measured from the phases the replica ran, as live replicas report
  their recent tokens per second.
Admission reserves prompt + true output tokens of KV cache, so a replica never exceeds it.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from orchestrator.defaults import LOAD_WINDOW_S
from orchestrator.router.context import ReplicaView
from orchestrator.router.prefix import BLOCK_TOKENS, PrefixIndex, cached_tokens, capacity_blocks

CHUNK_TOKENS = 2048  # vLLM's default token budget per iteration with chunked prefill


@dataclass
class SimRequest:
    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int
    pinned_precision: str | None = None
    block_hashes: tuple[int, ...] = ()
    expected_output: int = 0  # the router's prediction when it routed the request
    routed_cached: int = 0  # prompt tokens the router expected the replica to have cached
    cached: int = 0  # prompt tokens the replica really had cached
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
    speed_factor: float = 1.0  # true speed / planned speed
    noise: float = 0.0  # sd of the log of each phase's duration
    seed: int = 0
    block_tokens: int = BLOCK_TOKENS
    kv_true: int = 0  # KV tokens really reserved
    planned_s: float = 0.0  # the current phase's duration as the plan predicts it
    measured: tuple[float, float] = (0.0, 0.0)  # decayed (planned s, true s) of past phases

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        blocks = capacity_blocks(self.view.kv_capacity_tokens, self.block_tokens)
        self.cache = PrefixIndex(blocks)  # the engine's own prefix cache
        if self.view.prefix is None:
            self.view.prefix = PrefixIndex(blocks)  # the router's guess at it

    # -- the router's view -----------------------------------------------------------
    def snapshot(self) -> ReplicaView:
        v = self.view
        v.running = len(self.running)
        v.waiting = len(self.waiting) + len(self.prefilling)  # live: no token yet
        return v

    # -- events ----------------------------------------------------------------------
    def enqueue(self, req: SimRequest, now: float) -> float | None:
        """Queue a routed request; returns a new wake-up time if the replica must re-plan."""
        v, todo = self.view, req.prompt_tokens - req.routed_cached
        self._note_load(todo, now)
        self.waiting.append(req)
        v.waiting_prefill_tokens += todo
        v.waiting_output_tokens += req.expected_output
        v.kv_used_tokens += req.prompt_tokens + req.expected_output
        if self.phase == "idle":
            return self.plan(now)
        if self.phase == "decode" and self.steps > 1 and self.step_s > 0:
            done = int((now - self.phase_start) / self.step_s)
            if done + 1 < self.steps:
                self.planned_s *= (done + 1) / self.steps
                self.steps = done + 1
                self.phase_end = self.phase_start + self.steps * self.step_s
                self.version += 1
                return self.phase_end
        return None

    def wake(self, now: float, finished: list[SimRequest]) -> float | None:
        """The current phase ended at ``now``: apply it, then plan the next one."""
        if self.phase != "idle":
            self._measure(now - self.phase_start, self.planned_s)
        getattr(self, f"_end_{self.phase}")(now, finished)
        return self.plan(now)

    def _measure(self, true_s: float, planned_s: float) -> None:
        # What a live replica reports as its recent speed, against what the plan predicts:
        # the router's correction, decayed so it follows a replica that changes.
        p, t = self.measured
        self.measured = (0.9 * p + planned_s, 0.9 * t + true_s)
        if self.measured[1] > 0:
            self.view.speed_correction = min(max(self.measured[0] / self.measured[1], 0.2),
                                             5.0)

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
        """``step_s`` as the plan predicts it; the replica runs at its true speed."""
        self.planned_s = step_s * steps
        jitter = math.exp(self.rng.gauss(0.0, self.noise) - self.noise ** 2 / 2) \
            if self.noise else 1.0
        step_s = step_s / self.speed_factor * jitter
        self.phase, self.phase_start, self.step_s, self.steps = phase, now, step_s, steps
        self.phase_end = now + step_s * steps
        self.version += 1
        return self.phase_end

    def _admit(self) -> None:
        v = self.view
        while self.waiting:
            r = self.waiting[0]
            need = r.prompt_tokens + r.output_tokens
            if len(self.running) + len(self.prefilling) >= v.max_batch:
                break
            if self.kv_true + need > v.kv_capacity_tokens and self.kv_true:
                break
            self.waiting.popleft()
            self.kv_true += need
            self.peak_kv = max(self.peak_kv, self.kv_true)
            r.cached = cached_tokens(self.cache.match(r.block_hashes), self.block_tokens,
                                     r.prompt_tokens)
            r.prefill_left = r.prompt_tokens - r.cached
            self.prefilling.append(r)

    # -- phase ends ------------------------------------------------------------------
    def _first_token(self, r: SimRequest, now: float, finished) -> None:
        v = self.view
        v.waiting_prefill_tokens -= r.prompt_tokens - r.routed_cached
        v.waiting_output_tokens -= r.expected_output
        r.first_token_s, r.generated, r.prefill_left = now, 1, 0
        self.cache.insert(r.block_hashes)
        v.running_context_tokens += r.prompt_tokens + 1
        v.decode_tokens_left += max(r.expected_output - 1, 0)
        if r.generated >= r.output_tokens:
            self._finish(r, now, finished)
        else:
            self.running.append(r)

    def _finish(self, r: SimRequest, now: float, finished) -> None:
        v = self.view
        r.finish_s = now
        self.kv_true -= r.prompt_tokens + r.output_tokens
        v.kv_used_tokens -= r.prompt_tokens + r.expected_output
        v.decode_tokens_left -= max(r.expected_output - r.generated, 0)
        v.running_context_tokens -= r.prompt_tokens + r.generated
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
        v.running_context_tokens += k * len(self.running)
        keep = []
        for r in self.running:
            v.decode_tokens_left -= min(k, max(r.expected_output - r.generated, 0))
            r.generated += k
            if r.generated >= r.output_tokens:
                self._finish(r, now, finished)
            else:
                keep.append(r)
        self.running = keep

    def _end_idle(self, now, finished) -> None:
        pass
