"""Simulator invariants, over plans from the real planner and the live routing policies."""

import dataclasses

import pytest

from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.errors import UserError
from orchestrator.planner.select import plan_cluster
from orchestrator.router import policies
from orchestrator.sim.events import Simulation, replicas_from_plan
from orchestrator.sim.metrics import find_goodput, summarize
from orchestrator.sim.run import Scenario
from orchestrator.sim.trace import (TraceRequest, load_trace, mean_rate, pin_share, scale_rate,
                                    synthetic)
from tests.conftest import CLUSTERS, ROOT, cluster, node_type

# The Azure LLM inference trace 2023, conversation half (github.com/Azure/AzurePublicDataset,
# AzureLLMInferenceTrace_conv.csv; docs/sources.md: Request traces), where a copy sits beside
# the checkout; the test that replays it skips without it.
TRACE = ROOT.parent / "shared" / "data" / "azure-llm-inference-2023-conv.csv"


@pytest.fixture(scope="module")
def mixed():
    return plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))


def run(plan, reqs, policy="slo_aware", seed=0, **kw):
    reps = replicas_from_plan(plan, **kw)
    sim = Simulation(reps, policies.make(policy, seed=seed), slo_ttft_s=2, slo_tpot_s=0.1)
    return reps, sim.run(reqs)


@pytest.mark.parametrize("policy", ["slo_aware", "power_of_two", "round_robin"])
def test_conservation_and_kv_bound(mixed, policy):
    reqs = synthetic("bursty", 4.0, 800, seed=1)
    reqs.append(TraceRequest(reqs[-1].arrival_s, 200000, 10))  # longer than any context
    reps, done = run(mixed, reqs, policy, max_waiting=20)
    assert len(done) == len(reqs) == len({r.id for r in done})
    for r in done:
        assert (r.finish_s is None) != (r.rejected is None), r  # exactly one outcome
        if r.finish_s is not None:
            assert r.arrival_s <= r.first_token_s <= r.finish_s
    assert done[-1].rejected == "context_too_long"
    for rep in reps:
        assert rep.peak_kv <= rep.view.kv_capacity_tokens
        assert rep.view.kv_used_tokens == 0 and not rep.running and not rep.waiting


def test_deterministic_per_seed(mixed):
    reqs = synthetic("poisson", 3.0, 500, seed=7)
    a = summarize(run(mixed, reqs, "power_of_two", seed=5)[1], 3, 2, 0.1)
    b = summarize(run(mixed, reqs, "power_of_two", seed=5)[1], 3, 2, 0.1)
    assert a == b


def test_single_pool_reproduces_the_planners_single_stream_estimate():
    plan = plan_cluster(ClusterSpec.model_validate(cluster(node_type())))
    choice = plan.node_types[0].choice
    _, (r,) = run(plan, [TraceRequest(0.0, 512, 256)])
    assert 1 / r.tpot_s == pytest.approx(choice.perf.single_stream_tokens_per_s, rel=2e-3)
    assert r.ttft_s == pytest.approx(512 / choice.perf.prefill_tokens_per_s, rel=1e-9)


def test_pinned_requests_only_reach_their_precision(mixed):
    reqs = pin_share(synthetic("poisson", 3.0, 400, seed=2), 0.3, "f16", seed=2)
    _, done = run(mixed, reqs)
    pinned = [r for r in done if r.pinned_precision]
    assert pinned and all(r.precision == "f16" for r in pinned if r.finish_s)


def test_long_prefill_stalls_decodes_without_chunking(mixed):
    """Without chunking, a running sequence gets no token while a long prompt prefills; with
    chunking it gets one per 2048-token iteration."""
    def run_two(chunked, long_prompt=True):
        reps = replicas_from_plan(mixed, pools=["a100-80g-sxm-x4-nvlink"])
        reps[0].view.chunked_prefill = chunked
        sim = Simulation(reps, policies.make("round_robin"), slo_ttft_s=2, slo_tpot_s=0.1)
        reqs = [TraceRequest(0.0, 100, 5)]
        if long_prompt:
            reqs.append(TraceRequest(0.03, 8000, 5))
        return sim.run(reqs)[0]

    alone = run_two(False, long_prompt=False)
    stalled, chunked = run_two(False), run_two(True)
    prefill_s = 8000 / mixed.node_types[0].choice.perf.prefill_tokens_per_s
    assert stalled.finish_s > alone.finish_s + 0.9 * prefill_s
    assert chunked.finish_s < stalled.finish_s - 0.25 * prefill_s


def test_one_hour_of_the_trace_runs(mixed):
    if not TRACE.exists():
        pytest.skip(f"trace not found at {TRACE}")
    reqs = load_trace(TRACE)
    assert len(reqs) == 19366 and mean_rate(reqs) == pytest.approx(5.5, rel=0.05)
    s = Scenario(mixed, reqs[:1500]).run("slo_aware", 0.3)
    assert s.completed + s.rejected == 1500 and 0 < s.slo_attainment <= 1
    assert abs(sum(s.precision_token_share.values()) - 1) < 1e-9


def test_goodput_search_finds_the_crossing():
    @dataclasses.dataclass
    class Fake:
        rate_req_s: float
        slo_attainment: float

    # attainment falls linearly from 1 at rate 0 to 0 at rate 10: 90 % at rate 1.0
    g = find_goodput(lambda s: Fake(s * 2, max(0.0, 1 - s * 2 / 10)), steps=20)
    assert g.goodput_req_s == pytest.approx(1.0, rel=1e-3)
    assert find_goodput(lambda s: Fake(s, 0.5)).goodput_req_s == 0


def test_trace_loading_and_errors(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:46.6805900,374,44\n")
    reqs = load_trace(f)
    assert [r.prompt_tokens for r in reqs] == [374, 396]
    assert reqs[0].arrival_s == 0 and reqs[1].arrival_s == pytest.approx(4.3146, abs=1e-3)
    assert scale_rate(reqs, 2)[1].arrival_s == pytest.approx(reqs[1].arrival_s / 2)
    f.write_text("time,in,out\n1,2,3\n")
    with pytest.raises(UserError, match="needs the columns"):
        load_trace(f)
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nnoon,x,3\n")
    with pytest.raises(UserError, match="t.csv:2: cannot parse"):
        load_trace(f)
    with pytest.raises(UserError, match="rate scale must be > 0"):
        scale_rate(reqs, 0)
    with pytest.raises(UserError, match="valid: bursty, poisson"):
        synthetic("uniform", 1, 1)


def test_autoscaled_replay_uses_fewer_replica_seconds_within_the_inventory():
    from orchestrator.sim.run import Autoscale

    spec = load_cluster_spec(CLUSTERS / "mixed-autoscale.yaml")
    plan = plan_cluster(spec)
    # a quiet start, a burst, and quiet again
    quiet = synthetic("poisson", 0.3, 120, seed=1)
    burst = synthetic("poisson", 6.0, 1200, seed=2)
    t1 = quiet[-1].arrival_s
    tail = synthetic("poisson", 0.3, 120, seed=3)
    t2 = t1 + burst[-1].arrival_s
    shift = dataclasses.replace
    trace = (quiet + [shift(r, arrival_s=t1 + r.arrival_s) for r in burst]
             + [shift(r, arrival_s=t2 + r.arrival_s) for r in tail])
    auto = Scenario(plan, trace, autoscale=Autoscale.from_spec(plan, spec, cold_start_s=30))
    fixed = Scenario(plan, trace)
    a, f = auto.run("slo_aware"), fixed.run("slo_aware")
    log = auto.last_scaling
    assert a.replica_seconds < 0.8 * f.replica_seconds
    assert any(d > 1 for _, pool, d in log.events)  # the burst grew a pool
    assert all(log.peak[n.node_type] <= n.replicas for n in plan.pools())
    assert a.slo_attainment > 0.5 and a.completed + a.rejected == a.requests


def test_the_simulator_bounds_queues_and_scores_slos_as_the_live_endpoint_does(mixed):
    from orchestrator import defaults
    from orchestrator.config import ServingSpec
    from orchestrator.router.context import RouteRequest

    assert {r.view.max_waiting for r in replicas_from_plan(mixed)} == {defaults.MAX_WAITING}
    assert ServingSpec().max_waiting == defaults.MAX_WAITING
    s = Scenario(mixed, [])
    assert (s.max_waiting, s.slo_ttft_s, s.slo_tpot_s) == (
        defaults.MAX_WAITING, defaults.SLO_TTFT_S, defaults.SLO_TPOT_S)
    r = RouteRequest(1, 1)
    assert (r.slo_ttft_s, r.slo_tpot_s) == (defaults.SLO_TTFT_S, defaults.SLO_TPOT_S)


def test_a_llama_server_pool_batches_in_the_simulator_where_llama_cpp_queues():
    """The same node type planned on llama-server (slots) and on llama-cpp-python (one at a
    time): the simulator decodes the planned slots together, so eight requests at once
    finish sooner in all and the last one's first token comes earlier."""
    def node(backend):
        return cluster(node_type(name="cpu-a", gpu=None, gpus_per_node=None, interconnect=None,
                                 cpu={"cores": 1, "memory_gb": 1.0, "peak_tflops": 0.29,
                                      "memory_bandwidth_gbs": 16},
                                 backends=[backend]),
                       model="gemma-3-270m", planner={"min_context": 2048})

    reqs = [TraceRequest(0.0, 512, 256) for _ in range(8)]
    out = {}
    for backend in ("llamaserver", "llamacpp"):
        plan = plan_cluster(ClusterSpec.model_validate(node(backend)))
        reps, done = run(plan, reqs)
        assert reps[0].view.max_batch == plan.node_types[0].choice.perf.batch
        out[backend] = (max(r.finish_s for r in done), max(r.first_token_s for r in done),
                        reps[0].view.max_batch)
    assert out["llamaserver"][2] > 1 and out["llamacpp"][2] == 1
    assert out["llamaserver"][0] < out["llamacpp"][0] / 2
    assert out["llamaserver"][1] < out["llamacpp"][1]
