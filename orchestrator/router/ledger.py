"""The live router's view of each replica's load, kept by the ingress itself.

Every request passes through the ingress, so it knows at once what each replica was sent,
what has started producing tokens and what finished: exact, immediate accounting where the
replicas' own routing stats (Ray Serve's record_routing_stats) arrive only every half
second. Those stats still correct the plan's speed estimate (measured tokens/s) and cover
load the ingress did not send. Pure code: the same ReplicaView objects the simulator feeds
to the same policies.

It accounts each request by its predicted output (router/predict.py), never the client's
max_tokens, which is only a cap; and it keeps one ``PrefixIndex`` per replica, the blocks
of the prompts it sent there, as its guess at that replica's prefix cache (the engines'
own caches are not visible from here).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from orchestrator.defaults import LOAD_WINDOW_S
from orchestrator.router.context import ReplicaView
from orchestrator.router.prefix import (BLOCK_TOKENS, PrefixIndex, cached_tokens,
                                        capacity_blocks)


@dataclass
class _InFlight:
    replica: str
    prompt: int
    expected_output: int  # the predictor's guess, not the client's cap
    cached: int = 0  # prompt tokens the replica is expected to find in its prefix cache
    produced: int = 0
    started: bool = False


class Ledger:
    def __init__(self, clock=time.monotonic, block_tokens: int = BLOCK_TOKENS):
        self.clock = clock
        self.block_tokens = block_tokens
        self.prefix: dict[str, PrefixIndex] = {}  # replica id -> blocks sent there
        self.templates: dict[str, ReplicaView] = {}  # replica id -> static view
        self.flights: dict[str, _InFlight] = {}  # request id -> state
        self.load: dict[str, tuple[float, float]] = {}  # replica -> (tokens/s, at)
        self.reported: dict[str, dict] = {}

    # -- replicas -----------------------------------------------------------------------
    def sync(self, replicas: dict[str, ReplicaView]) -> None:
        """Replace the set of replicas (ids to static views) as Serve reports it; a new
        replica's prefix index starts empty, a gone one's is dropped."""
        self.templates = dict(replicas)
        self.prefix = {rid: self.prefix[rid] if rid in self.prefix else PrefixIndex(
            capacity_blocks(v.kv_capacity_tokens, self.block_tokens))
            for rid, v in self.templates.items()}

    def report(self, replica: str, stats: dict) -> None:
        self.reported[replica] = stats

    # -- requests -----------------------------------------------------------------------
    def dispatched(self, request_id: str, replica: str, prompt: int, expected_output: int,
                   block_hashes: tuple[int, ...] = ()) -> None:
        """A request sent to ``replica``: ``prompt`` tokens, ``expected_output`` predicted
        output tokens, its prompt's chained block hashes (router/prefix.py)."""
        index = self.prefix.get(replica)
        cached = 0
        if index is not None and block_hashes:
            cached = cached_tokens(index.match(block_hashes), self.block_tokens, prompt)
            index.insert(block_hashes)
        self.flights[request_id] = _InFlight(replica, prompt, expected_output, cached)
        rate, at = self.load.get(replica, (0.0, self.clock()))
        now = self.clock()
        decayed = rate * math.exp(-(now - at) / LOAD_WINDOW_S)
        # a prefix hit is not computed: the prefill load is the prompt less the hit
        self.load[replica] = (decayed + (prompt - cached) / LOAD_WINDOW_S, now)

    def token(self, request_id: str, n: int = 1) -> None:
        f = self.flights.get(request_id)
        if f is not None:
            f.started = True
            f.produced += n

    def finished(self, request_id: str) -> None:
        self.flights.pop(request_id, None)

    # -- the policy's input --------------------------------------------------------------
    def views(self) -> list[ReplicaView]:
        out = {rid: replace(v, running=0, waiting=0, waiting_prefill_tokens=0,
                            waiting_output_tokens=0, kv_used_tokens=0, decode_tokens_left=0,
                            running_context_tokens=0)
               for rid, v in self.templates.items()}
        for f in self.flights.values():
            v = out.get(f.replica)
            if v is None:
                continue
            # a request that outran its prediction holds at least what it produced
            v.kv_used_tokens += f.prompt + max(f.expected_output, f.produced)
            if f.started:
                v.running += 1
                v.decode_tokens_left += max(f.expected_output - f.produced, 0)
                v.running_context_tokens += f.prompt + f.produced
            else:
                v.waiting += 1
                v.waiting_prefill_tokens += f.prompt - f.cached
                v.waiting_output_tokens += f.expected_output
        now = self.clock()
        for rid, v in out.items():
            v.prefix = self.prefix.get(rid)
            rate, at = self.load.get(rid, (0.0, now))
            v.prefill_load_tokens_per_s = rate * math.exp(-(now - at) / LOAD_WINDOW_S)
            measured = self.reported.get(rid, {}).get("recent_tokens_per_s") or 0.0
            modelled = v.speeds.decode_tokens_per_s(max(v.running, 1), 512)
            if measured > 0 and modelled > 0 and v.running:
                # per-replica measured speed corrects the plan's estimate, within reason
                v.speed_correction = min(max(measured / modelled, 0.2), 5.0)
        return list(out.values())
