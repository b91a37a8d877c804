"""Prefix-aware routing baselines: the default algorithms of Ray Serve LLM, llm-d and
NVIDIA Dynamo, over our replica views.

Each system keeps its own record of what every replica has cached (Ray: a character tree
per replica; llm-d: an index of prompt-block hashes; Dynamo: a radix tree fed by the
engines' KV events). Here that record is the replica's ``PrefixIndex`` and a match counts
leading blocks of ``req.block_hashes``. A prompt shorter than one block has no hashes and
matches nothing anywhere, so it is routed on load alone. Importing this module registers
the classes in ``policies.POLICIES``.
"""

from __future__ import annotations

from orchestrator.router.context import ReplicaView, RouteRequest
from orchestrator.router.policies import POLICIES, Policy, PowerOfTwo


def matched_blocks(req: RouteRequest, r: ReplicaView) -> int:
    return r.prefix.match(req.block_hashes) if r.prefix is not None else 0


def cache_blocks(r: ReplicaView) -> int:
    return len(r.prefix) if r.prefix is not None else 0


class PrefixAffinity(PowerOfTwo):
    """Ray Serve LLM's ``PrefixCacheAffinityRouter``. When the replicas' queues differ by
    more than ``imbalanced_threshold`` requests it is plain power of two choices. Otherwise
    it matches the prompt against every replica's tree: if the longest match covers at
    least ``match_rate_threshold`` of the prompt the candidates are the replicas holding
    that longest match, else the replicas with the smallest trees. The candidate with the
    fewest ongoing requests takes the request.

    Sources (ray-project/ray): python/ray/llm/_internal/serve/routing_policies/prefix_aware/
    prefix_aware_router.py (``initialize_state`` defaults, ``_prefix_match_best_replicas``),
    .../prefix_aware/prefix_tree.py (``prefix_match``, ``get_smallest_tenants``),
    python/ray/serve/_private/request_router/request_router.py
    (``select_from_candidate_replicas``: the lowest queue length among the candidates).
    """

    name = "prefix_affinity"
    description = ("longest cached prefix when queues are balanced, else power of two "
                   "(Ray Serve LLM's PrefixCacheAffinityRouter)")
    imbalanced_threshold = 10  # ongoing requests, most loaded minus least loaded
    match_rate_threshold = 0.1  # share of the prompt the longest match must cover

    def choose(self, req, replicas):
        load = [r.outstanding for r in replicas]
        if max(load) - min(load) > self.imbalanced_threshold:
            return super().choose(req, replicas)
        hits = [matched_blocks(req, r) for r in replicas]
        best = max(hits)
        if req.block_hashes and best / len(req.block_hashes) >= self.match_rate_threshold:
            pool = [r for r, h in zip(replicas, hits) if h == best]
        else:
            # Ray takes the smallest trees cluster-wide; a choice must stay among these
            least = min(cache_blocks(r) for r in replicas)
            pool = [r for r in replicas if cache_blocks(r) == least]
        return min(pool, key=lambda r: (r.outstanding, self.rng.random()))


class LlmdScorer(Policy):
    """llm-d's default scheduling profile: a weighted sum of three scorers, each in [0, 1],
    highest total wins, ties at random. Prefix cache (weight 3): matched blocks over the
    prompt's blocks. Queue (weight 2): waiting requests min-max normalised and inverted,
    1 for every replica when all queues are equal. KV-cache utilisation (weight 2): one
    minus the fraction of the KV cache in use.

    Sources (llm-d/llm-d-inference-scheduler): config/charts/epplib/templates/_config.yaml
    (the default profile and its weights), pkg/epp/framework/plugins/scheduling/scorer/
    prefix/plugin.go, .../scorer/queuedepth/queue.go, .../scorer/kvcacheutilization/
    kvcache_utilization.go, pkg/epp/scheduling/scheduler_profile.go (each score clamped to
    [0, 1], then weighted and summed), pkg/epp/framework/plugins/scheduling/picker/maxscore/
    picker.go (shuffle, then the highest score).
    """

    name = "llmd_scorer"
    description = ("3 x prefix-cache hit + 2 x inverted queue + 2 x free KV cache, highest "
                   "wins (llm-d's default scorers)")
    prefix_weight, queue_weight, kv_weight = 3.0, 2.0, 2.0

    def score(self, req: RouteRequest, r: ReplicaView, lo: int, hi: int) -> float:
        blocks = len(req.block_hashes)
        prefix = matched_blocks(req, r) / blocks if blocks else 0.0
        queue = 1.0 if hi == lo else (hi - r.waiting) / (hi - lo)
        # our kv_use counts reserved room (prompt + max output); vLLM reports blocks in use
        kv = min(max(1.0 - r.kv_use, 0.0), 1.0)
        return self.prefix_weight * prefix + self.queue_weight * queue + self.kv_weight * kv

    def choose(self, req, replicas):
        lo, hi = min(r.waiting for r in replicas), max(r.waiting for r in replicas)
        return max(replicas, key=lambda r: (self.score(req, r, lo, hi), self.rng.random()))


class DynamoKV(Policy):
    """NVIDIA Dynamo's KV router (default selector, temperature 0): lowest cost wins,

        cost = overlap_score_weight * prefill_blocks + decode_blocks

    prefill_blocks: the worker's prompt tokens still to prefill plus this prompt, less the
    blocks it has cached, in blocks. decode_blocks: the blocks of the worker's active
    sequences plus the blocks of this prompt it does not hold. Ties go to the worker with
    the smaller cache, then at random.

    Sources (ai-dynamo/dynamo): lib/kv-router/src/scheduling/selector.rs
    (``DefaultWorkerSelector``: the logit, ``softmax_sample`` at temperature 0, the tree-size
    tie-break), lib/kv-router/src/scheduling/config.rs (``overlap_score_weight`` 1.0,
    ``router_temperature`` 0.0, output blocks not tracked), lib/kv-router/src/sequence.rs
    (``ActiveSequences``: prefill tokens = prompt minus cached blocks, potential blocks =
    active blocks plus new ones). The newest selector/default.rs splits the weight into
    ``prefill_load_scale`` and ``overlap_score_credit``, both 1.0: the same cost.
    """

    name = "dynamo_kv"
    description = ("least prefill plus decode work in KV blocks, cached blocks not "
                   "prefilled (NVIDIA Dynamo's KV router)")
    overlap_score_weight = 1.0

    def cost(self, req: RouteRequest, r: ReplicaView) -> float:
        bt = req.block_tokens
        hit = matched_blocks(req, r)
        prefill = r.waiting_prefill_tokens + max(req.prompt_tokens - hit * bt, 0)
        # Dynamo counts prompt blocks of in-flight requests; ours include decoded tokens
        active = r.running_context_tokens + r.waiting_prefill_tokens
        # Dynamo counts the blocks its active sequences lack; we only know the cache
        new = len(req.block_hashes) - hit
        return self.overlap_score_weight * prefill / bt + active / bt + new

    def choose(self, req, replicas):
        return min(replicas, key=lambda r: (self.cost(req, r), cache_blocks(r),
                                            self.rng.random()))


BASELINES: tuple[type[Policy], ...] = (PrefixAffinity, LlmdScorer, DynamoKV)
POLICIES.update({p.name: p for p in BASELINES})
