"""Autoscaling decisions, table-driven, on the mixed cluster's two pools."""

import pytest

from orchestrator.autoscale.policy import Knobs, PolicyState, PoolLoad, PoolSpec, decide

F16 = PoolSpec("a100", "f16", 100, sequences_per_replica=64, tokens_per_s_per_replica=5000,
               min_replicas=1, max_replicas=3)
AWQ = PoolSpec("r3090", "awq_int4", 60, sequences_per_replica=6, tokens_per_s_per_replica=158,
               min_replicas=1, max_replicas=4)
SPECS = [F16, AWQ]


def run(loads, now=1000.0, state=None, knobs=Knobs()):
    state = state or PolicyState()
    return {d.pool: d for d in decide(SPECS, loads, now, state, knobs)}, state


@pytest.mark.parametrize("name, loads, want, causes", [
    ("steady", {"a100": PoolLoad(1, 20, 0), "r3090": PoolLoad(2, 4, 0)}, {"a100": 1, "r3090": 2},
     {"a100": "steady", "r3090": "steady"}),
    ("burst on pinned F16 traffic grows only F16",
     {"a100": PoolLoad(1, 64, 60, waiting_pinned=60), "r3090": PoolLoad(2, 4, 0)},
     {"a100": 3, "r3090": 2}, {"a100": "sequences", "r3090": "steady"}),
    ("unpinned burst with F16 at its max spills to the 3090 pool",
     {"a100": PoolLoad(3, 192, 20, waiting_pinned=0), "r3090": PoolLoad(2, 8, 0)},
     {"a100": 3, "r3090": 4}, {"a100": "sequences", "r3090": "spill"}),
    ("pool at inventory max is capped",
     {"a100": PoolLoad(1, 20, 0), "r3090": PoolLoad(4, 24, 40, waiting_pinned=40)},
     {"a100": 1, "r3090": 4}, {"a100": "steady", "r3090": "sequences"}),
])
def test_table(name, loads, want, causes):
    got, _ = run(loads)
    assert {k: d.desired for k, d in got.items()} == want, name
    # the cause is the metric's label (ingress /metrics), the reason the operator's text
    assert {k: d.cause for k, d in got.items()} == causes, name
    for d in got.values():
        assert d.reason


def test_cap_reason_names_the_inventory():
    got, _ = run({"a100": PoolLoad(1, 20, 0), "r3090": PoolLoad(4, 24, 40, waiting_pinned=40)})
    assert "capped at 4" in got["r3090"].reason


def test_idle_shrinks_least_useful_first_after_the_delay():
    state = PolicyState()
    idle = {"a100": PoolLoad(3, 0, 0), "r3090": PoolLoad(4, 0, 0)}
    got, _ = run(idle, now=0, state=state)
    assert got["a100"].desired == 3 and got["r3090"].desired == 4  # not yet
    got, _ = run(idle, now=121, state=state)
    assert got["r3090"].desired == 3 and got["a100"].desired == 3  # the 4-bit pool first
    assert got["r3090"].cause == "idle"
    got, _ = run({"a100": PoolLoad(3, 0, 0), "r3090": PoolLoad(1, 0, 0)}, now=400, state=state)
    assert got["r3090"].desired == 1  # never below min
    assert got["a100"].desired == 2


def test_scale_to_zero_only_where_allowed():
    zero = PoolSpec(**{**AWQ.__dict__, "min_replicas": 0, "scale_to_zero": True})
    state = PolicyState()
    loads = {"a100": PoolLoad(1, 0, 0), "r3090": PoolLoad(1, 0, 0)}
    decide([F16, zero], loads, 0, state)
    got = {d.pool: d.desired for d in decide([F16, zero], loads, 200, state)}
    assert got == {"a100": 1, "r3090": 0}


def test_flapping_load_does_not_flap_replicas():
    state = PolicyState()
    knobs = Knobs()
    replicas = {"a100": 2, "r3090": 2}
    history = []
    for t in range(0, 600, 10):
        busy = (t // 10) % 2 == 0
        loads = {"a100": PoolLoad(replicas["a100"], 70 if busy else 5, 0),
                 "r3090": PoolLoad(replicas["r3090"], 4 if busy else 0, 0)}
        for d in decide(SPECS, loads, float(t), state, knobs):
            replicas[d.pool] = d.desired
        history.append(dict(replicas))
    changes = sum(1 for a, b in zip(history, history[1:]) if a != b)
    assert changes <= 2, history


def test_spill_target_neither_shrinks_nor_grows_inside_its_cooldown():
    state = PolicyState()
    knobs = Knobs(up_cooldown_s=10, down_delay_s=60)
    capped = {"a100": PoolLoad(1, 2, 0), "r3090": PoolLoad(4, 24, 12, waiting_pinned=0)}
    spec_a = PoolSpec("a100", "f16", 100, 64, 5000, min_replicas=1, max_replicas=3)
    specs = [spec_a, AWQ]
    first = {d.pool: d for d in decide(specs, capped, 100.0, state, knobs)}
    assert first["a100"].desired == 2  # spill-over grows F16
    # 5 s later: the same spill inside the cooldown changes nothing, and the low
    # utilization of the new F16 replica does not start a countdown to shrink it
    again = {d.pool: d for d in decide(specs, {**capped, "a100": PoolLoad(2, 2, 0)}, 105.0,
                                       state, knobs)}
    assert again["a100"].desired == 2 and "a100" not in state.low_since


# One replica that prefills 10k prompt tokens a second and decodes 64 sequences at once.
PREFILL = PoolSpec("a100", "f16", 100, sequences_per_replica=64, tokens_per_s_per_replica=5000,
                   min_replicas=1, max_replicas=8, prefill_tokens_per_s_per_replica=10_000)


def test_a_prefill_backlog_scales_up_though_few_sequences_are_in_flight():
    # 2 sequences are 3 % of one replica's 64, but 40k queued prompt tokens take 4 s to
    # prefill at 10k tok/s: 4 replicas drain them within the 1 s target
    [d] = decide([PREFILL], {"a100": PoolLoad(1, 1, 1, waiting_prefill_tokens=40_000)},
                 1000.0, PolicyState())
    assert d.desired == 4
    assert d.reason.startswith("prefill backlog 4.0 s > 1.0 s"), d.reason


def test_the_sequence_signal_names_itself_when_it_drives():
    [d] = decide([PREFILL], {"a100": PoolLoad(1, 50, 10, waiting_prefill_tokens=5_000)},
                 1000.0, PolicyState())
    assert d.desired == 2  # 60 in flight over 70 % of 64
    assert d.reason.startswith("sequences 94% > 70%"), d.reason


def test_neither_signal_high_stays():
    [d] = decide([PREFILL], {"a100": PoolLoad(2, 40, 0, waiting_prefill_tokens=8_000)},
                 1000.0, PolicyState())
    assert (d.desired, d.reason) == (2, "steady")


def test_a_remaining_backlog_holds_off_scale_down():
    state, knobs = PolicyState(), Knobs(down_delay_s=60)
    # 2 replicas, 1 sequence in flight (1 %), but 10k prompt tokens queued: 0.5 s of
    # prefill, half the 1 s target, reads as 35 % (the target reads as 70 %), above
    # low_utilization's 30 %, so no lull starts and the pool keeps both replicas
    busy = {"a100": PoolLoad(2, 1, 0, waiting_prefill_tokens=10_000)}
    for t in (0.0, 100.0, 200.0):
        [d] = decide([PREFILL], busy, t, state, knobs)
        assert d.desired == 2, (t, d.reason)
    assert "a100" not in state.low_since
    # the backlog drains: now the lull starts, and after down_delay_s a replica goes
    idle = {"a100": PoolLoad(2, 1, 0, waiting_prefill_tokens=0)}
    [d] = decide([PREFILL], idle, 300.0, state, knobs)
    assert d.desired == 2
    [d] = decide([PREFILL], idle, 360.0, state, knobs)
    assert d.desired == 1 and "prefill backlog 0.0 s" in d.reason, d.reason


def test_no_prefill_speed_leaves_the_signal_off():
    spec = PoolSpec(**{**PREFILL.__dict__, "prefill_tokens_per_s_per_replica": 0.0})
    [d] = decide([spec], {"a100": PoolLoad(1, 1, 1, waiting_prefill_tokens=40_000)},
                 1000.0, PolicyState())
    assert d.desired == 1
