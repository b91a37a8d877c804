"""The prefix-aware baselines (router/baselines.py) against hand-built replica views."""

from dataclasses import replace

import pytest

from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.router import policies
from orchestrator.router.context import RouteRequest
from orchestrator.router.prefix import PrefixIndex
from orchestrator.sim.events import replicas_from_plan
from tests.conftest import CLUSTERS

BT = 512  # tokens per block
BASELINES = ["prefix_affinity", "llmd_scorer", "dynamo_kv"]


@pytest.fixture(scope="module")
def template():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    return replicas_from_plan(plan)[0].view


@pytest.fixture
def view(template):
    """A replica ``r{i}`` caching ``cached`` block hashes, with ``**load`` overrides."""
    def build(i, cached=(), **load):
        prefix = PrefixIndex(10_000)
        prefix.insert(cached)
        return replace(template, id=f"r{i}", prefix=prefix, **load)

    return build


def req(blocks, extra=100, **kw):
    """A prompt of ``blocks`` full blocks (hashes 1..blocks) and ``extra`` more tokens."""
    return RouteRequest(blocks * BT + extra, 100, block_hashes=tuple(range(1, blocks + 1)),
                        **kw)


def other(n, start=1000):
    return tuple(range(start, start + n))  # blocks of some unrelated prompt


@pytest.mark.parametrize("name", BASELINES)
def test_each_prefers_the_replica_holding_the_prefix_when_loads_are_equal(view, name):
    load = dict(running=2, waiting=1, kv_used_tokens=8000, running_context_tokens=6000)
    reps = [view(0, other(4), **load), view(1, (1, 2, 3, 4), **load),
            view(2, other(2, 2000), **load)]
    for seed in range(10):
        assert policies.make(name, seed=seed).choose(req(4), reps) is reps[1]


@pytest.mark.parametrize("name", BASELINES)
def test_a_prompt_shorter_than_a_block_routes_on_load(view, name):
    """No hashes, no match anywhere: the idle replica with the empty cache takes it."""
    short = RouteRequest(100, 50)
    reps = [view(0, (1, 2), running=2, waiting=2, running_context_tokens=4000),
            view(1, other(3), running=2, waiting=2, running_context_tokens=4000),
            view(2)]
    assert policies.make(name).choose(short, reps) is reps[2]


@pytest.mark.parametrize("busy, expected", [(11, 0), (12, 1)])
def test_prefix_affinity_falls_back_to_power_of_two_beyond_the_imbalance(view, busy, expected):
    """Ray's default imbalanced_threshold is 10 ongoing requests (max - min)."""
    reps = [view(0, (1, 2, 3, 4), running=busy), view(1, running=1)]
    for seed in range(10):
        assert policies.make("prefix_affinity", seed=seed).choose(req(4), reps) is reps[expected]


@pytest.mark.parametrize("blocks, expected", [(10, 0), (11, 2)])
def test_prefix_affinity_needs_a_tenth_of_the_prompt_else_the_smallest_cache(
        view, blocks, expected):
    """One matched block is 10 % of a 10-block prompt (enough) but not of an 11-block one:
    then the replica with the smallest cache takes it."""
    reps = [view(0, (1,) + other(9)), view(1, other(5, 2000)), view(2, other(3, 3000))]
    assert policies.make("prefix_affinity").choose(req(blocks), reps) is reps[expected]


@pytest.mark.parametrize("waiting, expected", [(3, 0), (4, 1)])
def test_llmd_trades_a_one_block_hit_against_the_queue_as_weighted(view, waiting, expected):
    """r0 holds 1 of 4 blocks: 3 x 0.25 = 0.75 of prefix score. Queues 0..10 normalise to
    1 - q/10, weight 2: r0 waiting 3 scores 1.4 + 0.75 = 2.15 > r1's 2.0 (empty queue);
    waiting 4 scores 1.2 + 0.75 = 1.95 < 2.0."""
    reps = [view(0, (1,), waiting=waiting), view(1, waiting=0), view(2, waiting=10)]
    pol = policies.make("llmd_scorer")
    kv = 2 * (1 - reps[0].kv_use)
    assert pol.score(req(4), reps[0], 0, 10) == pytest.approx(2 * (1 - waiting / 10) + 0.75 + kv)
    assert pol.score(req(4), reps[1], 0, 10) == pytest.approx(2.0 + kv)
    assert pol.choose(req(4), reps) is reps[expected]


def test_llmd_free_kv_cache_counts_twice(view, template):
    cap = template.kv_capacity_tokens
    reps = [view(0, kv_used_tokens=cap // 2), view(1, kv_used_tokens=cap // 4)]
    pol = policies.make("llmd_scorer")
    assert pol.score(req(4), reps[0], 0, 0) == pytest.approx(2.0 + 2 * 0.5, abs=1e-3)
    assert pol.choose(req(4), reps) is reps[1]


def test_dynamo_picks_the_least_cost_computed_by_hand(view):
    """A 4-block prompt (2,048 tokens, no partial block). Cost in blocks =
    (queued prefill + prompt - cached) + (active context + queued prefill) + uncached:
      r0 caches 3, 8 blocks active:           (4 - 3) + 8 + 1 = 10
      r1 caches 0, 2 active, 1 queued:    (1 + 4 - 0) + 3 + 4 = 12
      r2 caches 2, 4 queued:              (4 + 4 - 2) + 4 + 2 = 12"""
    r = req(4, extra=0)
    reps = [view(0, (1, 2, 3), running_context_tokens=8 * BT),
            view(1, running_context_tokens=2 * BT, waiting_prefill_tokens=BT),
            view(2, (1, 2), waiting_prefill_tokens=4 * BT)]
    pol = policies.make("dynamo_kv")
    assert [pol.cost(r, v) for v in reps] == [10, 12, 12]
    assert pol.choose(r, reps) is reps[0]
    # three more active blocks on r0 make it 13; the 12s tie and the smaller cache wins
    reps[0].running_context_tokens += 3 * BT
    assert pol.choose(r, reps) is reps[1]
    # overlap_score_weight 0 leaves decode load alone (Dynamo's docs): 12, 7, 6
    pol.overlap_score_weight = 0.0
    assert [pol.cost(r, v) for v in reps] == [12, 7, 6]
    assert pol.choose(r, reps) is reps[2]


def test_baselines_are_registered_with_descriptions():
    for name in BASELINES:
        assert name in policies.POLICIES and policies.make(name).description
