"""Routing policies and eligibility over replica views built from a real plan."""

import pytest

from orchestrator.config import load_cluster_spec
from orchestrator.errors import UnknownNameError
from orchestrator.models.precision import get_precision
from orchestrator.planner.select import plan_cluster
from orchestrator.router import policies
from orchestrator.router.context import RouteRequest
from orchestrator.router.estimate import estimate
from orchestrator.router.route import (CONTEXT_TOO_LONG, FLOOR, OK, OVERLOADED, PINNED,
                                       PREFERRED, SPILL, UNSATISFIABLE_PRECISION, route)
from orchestrator.sim.events import replicas_from_plan
from tests.conftest import CLUSTERS

A100, R3090 = "a100-80g-sxm-x4-nvlink", "rtx-3090-x2-nvlink"


@pytest.fixture(scope="module")
def plan():
    return plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))


@pytest.fixture
def views(plan):
    return [r.view for r in replicas_from_plan(plan)]


def by_pool(views, pool):
    return [v for v in views if v.pool == pool]


def req(prompt=200, out=100, **kw):
    return RouteRequest(prompt, out, **kw)


def test_pinned_precision_only_reaches_that_pool(views):
    pol = policies.make("slo_aware")
    for prompt in (10, 500, 3000):
        d = route(pol, req(prompt, pinned_precision="awq_int4"), views)
        assert d.outcome == OK and d.replica.precision == "awq_int4"


def test_unsatisfiable_precision(views):
    d = route(policies.make("power_of_two"), req(pinned_precision="q8_0"), views)
    assert d.outcome == UNSATISFIABLE_PRECISION and "awq_int4, f16" in d.detail
    floor = get_precision("q8_0").rank
    assert route(policies.make("round_robin"), req(min_rank=floor), views).replica.precision \
        == "f16"


def test_context_too_long_names_both_numbers(views):
    d = route(policies.make("round_robin"), req(130000, 2000), views)
    assert d.outcome == CONTEXT_TOO_LONG
    assert "130000" in d.detail and "132000" in d.detail and "131072" in d.detail


def test_overloaded_when_every_queue_is_full(views):
    for v in views:
        v.waiting = v.max_waiting
    assert route(policies.make("slo_aware"), req(), views).outcome == OVERLOADED
    # a retry after a replica failed the request is not refused for a full queue
    assert route(policies.make("slo_aware"), req(), views, bounded=False).outcome == OK


def test_long_prompt_skips_the_slow_prefill_pool(views):
    """A 1,000-token prompt cannot get its first token in 2 s on an idle 3090 pair
    (docs/sources.md: Decode and prefill)."""
    idle_3090 = by_pool(views, R3090)[0]
    assert estimate(req(1400), idle_3090).ttft_s > 2.0
    a100 = by_pool(views, A100)[0]
    a100.running, a100.waiting = 40, 5  # busy, yet still the only one in time
    a100.waiting_prefill_tokens = 2000
    assert route(policies.make("slo_aware"), req(1400), views).replica.pool == A100
    # a queue-length balancer sends it to the idle 3090 anyway
    assert route(policies.make("least_outstanding"), req(1400), views).replica.pool == R3090


def test_prefers_higher_precision_when_it_is_comfortable(views):
    assert route(policies.make("slo_aware"), req(100, 50), views).replica.pool == A100


def test_spills_short_prompts_when_the_best_pool_is_pressed(views):
    a100 = by_pool(views, A100)[0]
    a100.running, a100.waiting_prefill_tokens = 200, 8000  # ~1.5 s of prefill queued
    d = route(policies.make("slo_aware"), req(100, 50), views)
    assert d.replica.pool == R3090
    # ...but not a prompt the 3090s cannot prefill in time
    assert route(policies.make("slo_aware"), req(1400, 50), views).replica.pool == A100


def test_each_decision_says_why(views):
    """The reason the ingress counts per decision (orchestrator_routing_decisions_total)."""
    pol = policies.make("slo_aware")
    assert route(pol, req(100, 50), views).reason == PREFERRED
    assert route(pol, req(pinned_precision="awq_int4"), views).reason == PINNED
    assert route(pol, req(min_rank=get_precision("awq_int4").rank), views).reason == FLOOR
    assert route(pol, req(pinned_precision="q8_0"), views).reason == UNSATISFIABLE_PRECISION
    a100 = by_pool(views, A100)[0]
    a100.running, a100.waiting_prefill_tokens = 200, 8000  # pressed: short prompts spill
    assert route(pol, req(100, 50), views).reason == SPILL
    a100.waiting = a100.max_waiting  # full: pushed down by the queue, a spill too
    assert route(pol, req(1400, 50), views).reason == SPILL
    for v in views:
        v.waiting = v.max_waiting
    assert route(pol, req(), views).reason == OVERLOADED


def test_estimate_idle_ttft_is_prompt_over_prefill_speed(views):
    v = by_pool(views, A100)[0]
    e = estimate(req(1000, 10), v)
    assert e.ttft_s == pytest.approx(1000 / v.speeds.prefill_tokens_per_s())


def test_one_at_a_time_replica_counts_the_queue_ahead(views):
    v = by_pool(views, A100)[0]
    v.max_batch = 1
    idle = estimate(req(100, 10), v).ttft_s
    v.running, v.decode_tokens_left = 1, 200
    v.waiting, v.waiting_prefill_tokens, v.waiting_output_tokens = 1, 500, 100
    assert estimate(req(100, 10), v).ttft_s > idle + 300 * v.speeds.decode_step_s(1, 100)


@pytest.mark.parametrize("name", sorted(set(policies.POLICIES) - {"static_split"}))
def test_every_policy_returns_one_of_the_candidates(views, name):
    pol = policies.make(name, seed=3)
    for prompt in (5, 300, 2500):
        d = route(pol, req(prompt), views)
        assert d.outcome == OK and d.replica in views


def test_round_robin_cycles_and_least_outstanding_picks_least(views):
    rr = policies.make("round_robin")
    picks = [rr.choose(req(), views).id for _ in range(len(views) * 2)]
    assert set(picks) == {v.id for v in views}
    views[0].running, views[1].running = 5, 0
    views[2].running = 3
    assert policies.make("least_outstanding").choose(req(), views) is views[1]


def test_capacity_least_load_weighs_by_capacity(views):
    a100 = by_pool(views, A100)[0]
    a100.running = 10  # 10 / ~5,000 tok/s is lighter than 1 / ~160 tok/s
    for v in by_pool(views, R3090):
        v.running = 1
    assert policies.make("capacity_least_load").choose(req(), views) is a100


def test_static_split_follows_weights(views):
    pol = policies.make("static_split", seed=1, weights={A100: 0.0, R3090: 1.0})
    assert {pol.choose(req(), views).pool for _ in range(20)} == {R3090}


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="slo_aware"):
        policies.make("fastest")
