"""What a routing policy sees: a small request context and one view per replica.

The live ingress builds these from the HTTP request and the replicas' routing stats; the
simulator builds them from its simulated replicas. Policies never see a web request.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.defaults import MAX_WAITING, SLO_TPOT_S, SLO_TTFT_S
from orchestrator.backends import BACKENDS
from orchestrator.planner.performance import Speeds
from orchestrator.planner.plan import NodePlan
from orchestrator.router.prefix import BLOCK_TOKENS, PrefixIndex, cached_tokens


@dataclass(frozen=True)
class RouteRequest:
    """What the router knows of a request: its prompt counted by the model's tokenizer,
    the client's output cap, a predicted output length (router/predict.py; never the true
    one) and the prompt's block hashes (router/prefix.py)."""

    prompt_tokens: int
    max_tokens: int  # the client's cap (or the endpoint's default): the context it may use
    pinned_precision: str | None = None  # "NAME:PRECISION" model names pin one precision
    min_rank: int | None = None  # x-min-precision floor, as a quality rank
    slo_ttft_s: float = SLO_TTFT_S
    slo_tpot_s: float = SLO_TPOT_S
    expected_output: int | None = None  # the predictor's guess; None: assume max_tokens
    block_hashes: tuple[int, ...] = ()
    block_tokens: int = BLOCK_TOKENS
    # the pools that honour every request field it uses (serve/fields.py); None: any pool
    pools: frozenset[str] | None = None

    @property
    def total_tokens(self) -> int:
        """The context the request may reach: what a pool must hold to take it."""
        return self.prompt_tokens + self.max_tokens

    @property
    def output_guess(self) -> int:
        return self.expected_output if self.expected_output is not None else self.max_tokens

    @property
    def expected_tokens(self) -> int:
        """The KV cache the request is expected to use."""
        return self.prompt_tokens + self.output_guess

    @property
    def constrained(self) -> bool:
        """The request limits where it may go (a pinned precision, a floor, or fields only
        some pools honour)."""
        return (self.pinned_precision is not None or self.min_rank is not None
                or self.pools is not None)

    def accepts(self, precision: str, quality_rank: int, pool: str | None = None) -> bool:
        """Whether ``pool``, serving ``precision``, may take this request."""
        return ((self.pinned_precision is None or precision == self.pinned_precision)
                and (self.min_rank is None or quality_rank >= self.min_rank)
                and (self.pools is None or pool is None or pool in self.pools))


@dataclass
class ReplicaView:
    """One replica's static capacity (from the plan) and its current load (from stats)."""

    id: str
    pool: str
    precision: str
    quality_rank: int
    speeds: Speeds
    max_batch: int
    kv_capacity_tokens: int
    max_context: int
    chunked_prefill: bool
    capacity_tokens_per_s: float  # the plan's batched estimate, SkyServe's per-type weight
    running: int = 0
    waiting: int = 0
    waiting_prefill_tokens: int = 0  # prompt tokens queued or mid-prefill, not yet done
    waiting_output_tokens: int = 0
    kv_used_tokens: int = 0  # reserved by admitted sequences (prompt + max output)
    decode_tokens_left: int = 0  # output tokens the running sequences still owe
    running_context_tokens: int = 0
    speed_correction: float = 1.0  # measured / modelled decode speed
    prefill_load_tokens_per_s: float = 0.0  # recent prompt tokens admitted per second
    max_waiting: int = MAX_WAITING
    prefix: PrefixIndex | None = None  # the router's guess at this replica's prefix cache

    def cached_tokens(self, req: RouteRequest) -> int:
        """Prompt tokens this replica is expected to find cached for ``req``."""
        if self.prefix is None or not req.block_hashes:
            return 0
        return cached_tokens(self.prefix.match(req.block_hashes), req.block_tokens,
                             req.prompt_tokens)

    @property
    def kv_use(self) -> float:
        return self.kv_used_tokens / max(self.kv_capacity_tokens, 1)

    @property
    def outstanding(self) -> int:
        return self.running + self.waiting

    @property
    def queue_full(self) -> bool:
        return self.waiting >= self.max_waiting


def view_from_plan(n: NodePlan, replica_id: str, *, max_waiting: int = MAX_WAITING,
                   max_context: int | None = None) -> ReplicaView:
    """An idle replica of pool ``n`` as the plan describes it (the simulator's replicas and
    the live router's alike). ``max_context`` overrides the plan's where the engine serves
    less (llama.cpp's cap)."""
    c = n.choice
    return ReplicaView(
        id=replica_id, pool=n.node_type, precision=c.precision, quality_rank=c.quality_rank,
        speeds=c.speed_model.speeds(), max_batch=BACKENDS[c.backend].replica_batch(c),
        kv_capacity_tokens=c.memory.kv_tokens,
        max_context=max_context if max_context is not None else c.memory.max_context,
        chunked_prefill=c.perf.chunked_prefill,
        capacity_tokens_per_s=c.perf.batched_tokens_per_s, max_waiting=max_waiting)
