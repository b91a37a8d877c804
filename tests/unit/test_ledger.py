"""The live router's ledger over replica views from a real plan: requests are accounted by
their predicted output, never max_tokens, and each replica keeps a prefix index of the
prompt blocks sent to it."""

from dataclasses import replace

import pytest

from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.router.context import RouteRequest
from orchestrator.router.estimate import estimate
from orchestrator.router.ledger import Ledger
from orchestrator.router.prefix import capacity_blocks
from orchestrator.sim.events import replicas_from_plan
from tests.conftest import CLUSTERS

BLOCK = 16


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def ledger():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    views = {f"r{i}": replace(r.view, id=f"r{i}") for i, r in
             enumerate(replicas_from_plan(plan))}
    led = Ledger(Clock(), block_tokens=BLOCK)
    led.sync(views)
    return led


def view(led, rid):
    return next(v for v in led.views() if v.id == rid)


def test_a_waiting_request_counts_its_predicted_output_not_max_tokens(ledger):
    ledger.dispatched("q1", "r0", prompt=100, expected_output=40)
    v = view(ledger, "r0")
    assert (v.waiting, v.waiting_prefill_tokens, v.waiting_output_tokens) == (1, 100, 40)
    assert v.kv_used_tokens == 140


def test_a_running_request_owes_its_predicted_output_less_what_it_produced(ledger):
    ledger.dispatched("q1", "r0", prompt=100, expected_output=40)
    ledger.token("q1", 10)
    v = view(ledger, "r0")
    assert (v.running, v.decode_tokens_left, v.running_context_tokens) == (1, 30, 110)
    assert v.kv_used_tokens == 140
    ledger.token("q1", 50)  # past its prediction: owes nothing known, holds what it made
    v = view(ledger, "r0")
    assert v.decode_tokens_left == 0 and v.kv_used_tokens == 160
    ledger.finished("q1")
    assert view(ledger, "r0").kv_used_tokens == 0


def test_each_replica_gets_a_prefix_index_sized_by_its_kv_room(ledger):
    for v in ledger.views():
        assert v.prefix is not None and len(v.prefix) == 0
        assert v.prefix.capacity == capacity_blocks(v.kv_capacity_tokens, BLOCK)


def test_dispatch_inserts_the_blocks_and_a_repeat_prefix_is_counted_cached(ledger):
    hashes = (11, 22, 33)
    ledger.dispatched("q1", "r0", 50, 10, hashes)
    assert view(ledger, "r0").waiting_prefill_tokens == 50  # nothing cached yet
    assert view(ledger, "r1").prefix.match(hashes) == 0  # only where it was sent
    ledger.dispatched("q2", "r0", 60, 10, (11, 22, 44))  # shares two blocks
    v = view(ledger, "r0")
    assert v.prefix.match((11, 22, 33)) == 3
    assert v.waiting_prefill_tokens == 50 + (60 - 2 * BLOCK)
    # the router's estimate sees the same cache: a shared prefix prefills less
    req = RouteRequest(60, 10, expected_output=10, block_hashes=(11, 22, 33, 55),
                       block_tokens=BLOCK)
    assert v.cached_tokens(req) == 3 * BLOCK
    cold = replace(v, prefix=None)
    assert estimate(req, v).ttft_s < estimate(req, cold).ttft_s


def test_a_cached_prefix_is_not_prefill_load(ledger):
    ledger.dispatched("q1", "r0", 64, 1, (1, 2, 3, 4))
    first = view(ledger, "r0").prefill_load_tokens_per_s
    ledger.dispatched("q2", "r0", 64, 1, (1, 2, 3, 4))  # all cached but the last token
    assert view(ledger, "r0").prefill_load_tokens_per_s == pytest.approx(first * 65 / 64)


def test_a_replica_that_leaves_drops_its_index_and_a_new_one_starts_empty(ledger):
    ledger.dispatched("q1", "r0", 50, 10, (7, 8))
    ledger.finished("q1")
    kept = dict(ledger.templates)
    r0 = kept.pop("r0")
    ledger.sync(kept)
    assert "r0" not in ledger.prefix
    ledger.sync({**kept, "r0": r0})
    assert view(ledger, "r0").prefix.match((7, 8)) == 0
