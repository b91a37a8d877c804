"""The simulator without an oracle: the router predicts outputs, guesses prefix caches and
corrects its speed model from what replicas measured; the replicas keep the truth."""

import io
import json

import pytest

from orchestrator.config import load_cluster_spec
from orchestrator.errors import UserError
from orchestrator.planner.select import plan_cluster
from orchestrator.router import policies
from orchestrator.router.context import RouteRequest
from orchestrator.router.predict import OutputPredictor
from orchestrator.router.prefix import PrefixIndex, cached_tokens, hash_blocks
from orchestrator.sim.decisions import DecisionLog
from orchestrator.sim.error import SpeedError
from orchestrator.sim.events import Simulation, replicas_from_plan
from orchestrator.sim.run import Scenario
from orchestrator.sim.trace import TraceRequest, load_trace, scale_rate, synthetic
from tests.conftest import CLUSTERS, ROOT

MOONCAKE = ROOT.parent / "shared" / "data" / "mooncake-conversation-trace.jsonl"


@pytest.fixture(scope="module")
def mixed():
    return plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))


class Recording(policies.SLOAware):
    """slo_aware that keeps every request it was asked to route."""

    def __init__(self, seed=0):
        super().__init__(seed)
        self.seen: list[RouteRequest] = []

    def choose(self, req, replicas):
        self.seen.append(req)
        return super().choose(req, replicas)


def test_the_router_never_sees_the_true_output_length(mixed):
    reqs = [TraceRequest(i * 0.5, 300, 40 + 37 * (i % 5)) for i in range(200)]
    policy = Recording()
    sim = Simulation(replicas_from_plan(mixed), policy, slo_ttft_s=2, slo_tpot_s=0.1,
                     max_tokens=1000)
    done = sim.run(reqs)
    assert all(r.max_tokens == 1000 for r in policy.seen)
    assert policy.seen[0].expected_output == 256  # the prior: nothing has finished yet
    late = [r.expected_output for r in policy.seen[-50:]]
    # learned from finished requests: the median of 40..188 in steps of 37
    assert set(late) == {114}
    assert [d.output_tokens for d in done] == [t.output_tokens for t in reqs]


def test_max_tokens_caps_the_true_output_as_an_engine_would(mixed):
    done = Simulation(replicas_from_plan(mixed), policies.make("slo_aware"), slo_ttft_s=2,
                      slo_tpot_s=0.1, max_tokens=64).run([TraceRequest(0, 100, 500)])
    assert done[0].output_tokens == 64 and done[0].generated == 64


def test_predictor_buckets_by_prompt_length_and_caps_by_max_tokens():
    p = OutputPredictor(min_seen=4)
    for _ in range(10):
        p.observe(100, 20)
        p.observe(5000, 900)
    assert p.predict(120) == 20 and p.predict(6000) == 900
    assert p.predict(6000, max_tokens=300) == 300
    assert p.predict(40000) in (20, 900)  # an empty bucket borrows from all of them
    with pytest.raises(ValueError):
        OutputPredictor(quantile=1.5)


def test_prefix_index_matches_leading_blocks_and_evicts_least_recent():
    idx = PrefixIndex(4)
    idx.insert([1, 2, 3])
    assert idx.match([1, 2, 9, 3]) == 2 and idx.match([9, 1]) == 0
    idx.insert([7, 8])  # 5 blocks > 4: the oldest (1) goes
    assert idx.match([1, 2]) == 0 and idx.match([7, 8]) == 2 and len(idx) == 4
    assert cached_tokens(3, 512, 1000) == 999  # the last prompt token is always computed
    a, b = hash_blocks(list(range(1100)), 512), hash_blocks(list(range(1024)) + [5], 512)
    assert len(a) == 2 and a == b  # the partial block gets no hash
    assert hash_blocks([9] + list(range(1, 1100)), 512)[1] != a[1]  # chained


def test_a_repeated_prefix_is_routed_back_and_prefills_only_the_rest(mixed):
    blocks = tuple(range(100, 120))  # 20 blocks = 10,240 tokens
    reqs = [TraceRequest(0.0, 10300, 20, block_hashes=blocks),
            TraceRequest(30.0, 10400, 20, block_hashes=blocks + (7,))]
    reps = replicas_from_plan(mixed)
    done = Simulation(reps, policies.make("slo_aware"), slo_ttft_s=10,
                      slo_tpot_s=0.1).run(reqs)
    first, second = done
    assert second.replica == first.replica
    assert second.routed_cached == second.cached == 20 * 512
    assert second.ttft_s < first.ttft_s / 10


def test_speed_error_is_measured_and_corrected_not_known(mixed):
    types = [n.node_type for n in mixed.pools()]
    err = SpeedError({types[0]: -0.25}, step_noise=0.0)
    reps = replicas_from_plan(mixed, error=err)
    reqs = synthetic("poisson", 1.0, 150, seed=3)
    Simulation(reps, policies.make("slo_aware"), slo_ttft_s=2, slo_tpot_s=0.1).run(reqs)
    slow = [r for r in reps if r.view.pool == types[0]]
    assert slow and slow[0].speed_factor == 0.75
    assert slow[0].view.speed_correction == pytest.approx(0.75, rel=0.02)
    assert all(r.view.speed_correction == pytest.approx(1.0) for r in reps
               if r.view.pool != types[0] and r.measured[1] > 0)


def test_speed_error_parsing():
    types = ["a", "b"]
    e = SpeedError.parse("0.25", types, seed=1)
    assert {abs(v) for v in e.per_type.values()} == {0.25} and e.step_noise == 0.1
    assert SpeedError.parse("a=-0.2,b=0.1", types).per_type == {"a": -0.2, "b": 0.1}
    assert SpeedError.parse(None, types).describe() == "none"
    for bad, said in (("x", "fraction"), ("c=0.1", "not a node type"), ("a=-2", "range")):
        with pytest.raises(UserError, match=said):
            SpeedError.parse(bad, types)


def test_decisions_name_every_candidate_and_what_happened(mixed):
    buf = io.StringIO()
    sc = Scenario(mixed, synthetic("poisson", 2.0, 60, seed=2))
    sc.run("slo_aware", decisions=DecisionLog(buf, "slo_aware", 2.0, 0.1))
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 60
    replicas = sum(n.replicas for n in mixed.pools())
    for d in lines:
        assert len(d["candidates"]) == replicas
        assert d["chosen"] in {c["replica"] for c in d["candidates"]}
        assert {"ttft_s", "tpot_s", "cached_tokens", "speed_correction"} <= set(
            d["candidates"][0])
        assert d["actual"]["ttft_s"] > 0 and isinstance(d["actual"]["met_slo"], bool)


def test_jsonl_traces_load_with_block_hashes_and_spread_steps(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(d) for d in [
        {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]},
        {"timestamp": 0, "input_length": 600, "output_length": 7, "hash_ids": [0, 2]},
        {"timestamp": 3000, "input_length": 10, "output_length": 1, "hash_ids": []}]))
    t = load_trace(f)
    assert [r.arrival_s for r in t] == [0.0, 1.5, 3.0]
    assert t[1].block_hashes == (0, 2) and t[1].prompt_tokens == 600
    f.write_text('{"timestamp": 0, "input_length": "x"}\n')
    with pytest.raises(UserError, match="t.jsonl:1"):
        load_trace(f)


@pytest.mark.skipif(not MOONCAKE.exists(), reason="the Mooncake trace is not beside the "
                                                  "checkout (../shared/data)")
def test_the_mooncake_trace_loads_and_its_prefixes_hit(mixed):
    t = load_trace(MOONCAKE)
    assert len(t) == 12031 and 3530 < t[-1].arrival_s < 3540
    first = scale_rate(t[:1500], 0.05)
    done = Simulation(replicas_from_plan(mixed), policies.make("slo_aware"), slo_ttft_s=10,
                      slo_tpot_s=0.1).run(first)
    assert all(r.finish_s for r in done)
    hit = sum(r.cached for r in done) / sum(r.prompt_tokens for r in done)
    # The KV room holds a few hundred blocks: ~4 % of prompt tokens hit, of the 27 % an
    # unbounded cache would (benchmarks/README.md: Routing goodput).
    assert 0.02 < hit < 0.27, hit
