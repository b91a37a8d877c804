"""The planner against the seed guide's table and the published figures in docs/sources.md,
to the byte where it can be."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config import ClusterSpec, PlannerSpec, load_cluster_spec
from orchestrator.errors import NoFeasiblePlanError, UserError
from orchestrator.hardware.catalog import GB, GIB, get_gpu
from orchestrator.models.catalog import get_model
from orchestrator.models.precision import get_precision, quality_order
from orchestrator.planner.nodes import CPUHardware, NodeHardware
from orchestrator.planner.performance import decode_efficiency, prefill_efficiency
from orchestrator.planner.plan import Plan
from orchestrator.planner.select import NodeRequest, plan_cluster, plan_node, require_feasible
from tests.conftest import CLUSTERS, cluster, node_type

FOUR_BIT = {"q4_k_m", "awq_int4", "gptq_int4"}


@pytest.fixture(scope="module")
def seed():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "seed-table.yaml"), model="llama-3.1-70b")
    return {n.node_type: n for n in plan.node_types}


def test_single_4090_cannot_fit(seed):
    n = seed["rtx-4090-x1"]
    assert n.choice is None and "cannot fit" in n.shortfall and "short by" in n.shortfall


def test_2x3090_gets_4bit_with_small_kv_room(seed):
    c = seed["rtx-3090-x2-nvlink"].choice
    assert c.precision in FOUR_BIT
    assert 0 < c.memory.kv_room_bytes <= 8 * GB


def test_2x4090_gets_4bit(seed):
    assert seed["rtx-4090-x2"].choice.precision in FOUR_BIT


def test_4xa100_gets_f16_tp4(seed):
    c = seed["a100-80g-sxm-x4-nvlink"].choice
    assert (c.precision, c.parallelism, c.gpus_per_replica, c.replicas_per_node) == (
        "f16", "tensor", 4, 1)


def test_q5_k_m_rejected_on_48gb_with_the_shortfall(seed):
    rej = [r for r in seed["rtx-3090-x2-nvlink"].rejected if r.precision == "q5_k_m"]
    assert rej and rej[0].kind == "memory"
    assert "49.95 GB of weights" in rej[0].reason and "short by" in rej[0].reason
    assert "46.39 GB usable" in rej[0].reason  # 90 % of 2 x 24 GiB


def test_llamacpp_q4_k_m_on_2x3090_within_15_percent_of_seed():
    spec = ClusterSpec.model_validate(cluster(node_type(precisions=["q4_k_m"],
                                                        backends=["llamacpp"])))
    c = plan_cluster(spec).node_types[0].choice
    assert c.parallelism == "layer"
    assert c.perf.single_stream_tokens_per_s == pytest.approx(17.8, rel=0.15)


def test_no_estimate_above_its_ceiling():
    for f in CLUSTERS.glob("*.yaml"):
        for n in plan_cluster(load_cluster_spec(f)).node_types:
            for c in [n.choice] if n.choice else []:
                p = c.perf
                assert p.single_stream_tokens_per_s <= p.single_stream_ceiling
                assert p.batched_tokens_per_s <= p.batched_ceiling
                assert p.prefill_tokens_per_s <= p.prefill_ceiling


def test_mixed_cluster_f16_on_a100_4bit_on_3090():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    by = {n.node_type: n.choice for n in plan.node_types}
    assert by["a100-80g-sxm-x4-nvlink"].precision == "f16"
    assert by["rtx-3090-x2-nvlink"].precision in FOUR_BIT
    assert plan.node_types[1].replicas == 2  # two 3090 boxes, one replica each


def test_local_cluster_two_cpu_pools_at_different_precisions():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "local.yaml"))
    got = {n.node_type: (n.choice.precision, n.choice.backend) for n in plan.node_types}
    assert got == {"cpu-quality": ("f16", "llamaserver"),
                   "cpu-throughput": ("q4_k_m", "llamaserver")}


def test_kv_cache_arithmetic_matches_facts():
    m = get_model("llama-3.1-70b")
    assert m.kv_bytes_per_token(2) == 327_680
    assert m.kv_bytes_per_token(1) == 163_840


def test_memory_split_to_the_byte_for_2x3090_q4_k_m():
    spec = ClusterSpec.model_validate(cluster(node_type(precisions=["q4_k_m"],
                                                        backends=["llamacpp"])))
    mem = plan_cluster(spec).node_types[0].choice.memory
    usable = 2 * 24 * GIB * 0.9
    overhead = 2 * 0.5 * GIB
    assert mem.usable_bytes == int(usable)
    assert mem.weights_bytes == int(42.52e9)
    assert mem.kv_room_bytes == int(usable - 42.52e9 - overhead)
    assert mem.kv_tokens == int((usable - 42.52e9 - overhead) // 327_680)


def test_fp8_kv_roughly_doubles_tokens():
    base = cluster(node_type(name="l40s-x2", gpu="l40s", interconnect="pcie",
                             precisions=["awq_int4"], backends=["vllm"]))
    fp16 = plan_cluster(ClusterSpec.model_validate(base)).node_types[0].choice
    fp8 = plan_cluster(ClusterSpec.model_validate(
        {**base, "planner": {"kv_cache_dtype": "fp8"}})).node_types[0].choice
    assert (fp16.kv_cache_dtype, fp8.kv_cache_dtype) == ("fp16", "fp8")
    assert fp8.memory.kv_tokens == pytest.approx(2 * fp16.memory.kv_tokens, rel=0.01)


def test_fp8_kv_override_refused_without_fp8_tensor_cores():
    spec = ClusterSpec.model_validate(cluster(
        node_type(precisions=["awq_int4"], backends=["vllm"]),
        planner={"kv_cache_dtype": "fp8"}))
    n = plan_cluster(spec).node_types[0]
    assert n.choice is None
    (r,) = [r for r in n.rejected if r.backend == "vllm"]
    assert r.kind == "unsupported"
    assert "FP8 tensor cores (sm89+)" in r.reason and "rtx-3090" in r.reason


def test_auto_kv_keeps_fp16_where_the_context_fits():
    n = plan_cluster(ClusterSpec.model_validate(cluster(node_type()))).node_types[0]
    assert n.choice.kv_cache_dtype == "fp16"
    assert "KV cache fp16 (327,680 B/token)" in n.choice.why


def test_auto_kv_picks_the_least_lossy_cache_that_reaches_the_context():
    """The seed guide: full context needs more VRAM or a quantized KV cache. Where fp16
    cannot hold min_context on an FP8-capable pair (2x L40S, INT4 weights), fp8 can."""
    nt = node_type(name="l40s-x2", gpu="l40s", interconnect="pcie",
                   precisions=["awq_int4"], backends=["vllm"])
    spec = ClusterSpec.model_validate(cluster(nt))
    fp16 = plan_cluster(spec).node_types[0].choice
    assert fp16.kv_cache_dtype == "fp16"
    ctx = fp16.memory.kv_tokens + 1000  # one more than fp16 holds, well within fp8
    c = plan_cluster(spec, min_context=ctx).node_types[0].choice
    assert c.kv_cache_dtype == "fp8"
    assert c.memory.kv_bytes_per_token == 163_840 and c.memory.kv_tokens >= ctx
    assert f"fp16 327,680 B/token needs {ctx * 327_680 / 1e9:.2f} GB" in c.why


def test_auto_kv_on_llamacpp_goes_to_q8_0_then_q4_0():
    nt = node_type(precisions=["q4_k_m"], backends=["llamacpp"])
    spec = ClusterSpec.model_validate(cluster(nt))
    fp16_room = plan_cluster(spec).node_types[0].choice.memory.kv_room_bytes
    # a context that fp16 cannot hold but q8_0 (34 B per 32 values) can, then q4_0
    ctx8 = int(fp16_room / (327_680 * 34 / 64)) - 16
    assert plan_cluster(spec, min_context=ctx8).node_types[0].choice.kv_cache_dtype == "q8_0"
    ctx4 = int(fp16_room / (327_680 * 18 / 64)) - 16
    c = plan_cluster(spec, min_context=ctx4).node_types[0].choice
    assert c.kv_cache_dtype == "q4_0" and c.memory.kv_tokens >= ctx4
    assert "fp16" in c.kv_note and "q8_0" in c.kv_note


def test_full_context_on_two_3090s_picks_a_quantized_cache_or_says_the_bytes_short():
    """131,072 tokens of Llama 3.1 70B on 2x RTX 3090: IQ3_M weights with a q4_0 cache fit;
    Q4_K_M is short even with q4_0, and says by how many bytes."""
    n = plan_cluster(ClusterSpec.model_validate(cluster(node_type())),
                     min_context=131_072).node_types[0]
    assert (n.choice.precision, n.choice.kv_cache_dtype) == ("iq3_m", "q4_0")
    assert n.choice.memory.kv_tokens >= 131_072
    (r,) = [r for r in n.rejected if r.backend == "llamacpp" and r.precision == "q4_k_m"]
    assert r.kind == "context"
    # the closest miss is the most compact cache, q4_0: 131,072 x 92,160 B = 12.08 GB
    assert "12.08 GB q4_0 KV for 131072-token context" in r.reason
    assert f"({r.shortfall_bytes:,} bytes)" in r.reason
    assert "fp16 327,680 B/token, q8_0 174,080 B/token, q4_0 92,160 B/token" in r.reason


def test_llamacpp_fp8_override_means_q8_0():
    spec = ClusterSpec.model_validate(cluster(
        node_type(precisions=["q4_k_m"], backends=["llamacpp"]),
        planner={"kv_cache_dtype": "fp8"}))
    assert plan_cluster(spec).node_types[0].choice.kv_cache_dtype == "q8_0"


def test_fp8_weights_need_sm89():
    spec = ClusterSpec.model_validate(cluster(node_type(precisions=["fp8_w8a8"])))
    n = plan_cluster(spec, model="llama-3.1-8b").node_types[0]
    assert n.choice is None
    assert any("needs sm89+, rtx-3090 is sm86" in r.reason for r in n.rejected)
    ada = ClusterSpec.model_validate(cluster(node_type(
        name="l40s", gpu="l40s", gpus_per_node=1, interconnect="pcie", precisions=["fp8_w8a8"])))
    assert plan_cluster(ada, model="llama-3.1-8b").node_types[0].choice.precision == "fp8_w8a8"


def test_min_context_rejects_with_context_kind():
    # with the cache forced to fp16 (auto finds IQ3_M with a q4_0 cache: test above)
    spec = ClusterSpec.model_validate(cluster(planner={"min_context": 131072,
                                                       "kv_cache_dtype": "fp16"}))
    n = plan_cluster(spec).node_types[0]
    assert n.choice is None
    assert {r.kind for r in n.rejected} >= {"context", "memory"}


def test_precision_floor_and_nothing_fits_anywhere():
    spec = ClusterSpec.model_validate(cluster(planner={"min_precision": "q8_0"}))
    plan = plan_cluster(spec)
    assert not plan.feasible
    assert any(r.kind == "floor" and r.precision == "q4_k_m" for r in plan.node_types[0].rejected)
    with pytest.raises(NoFeasiblePlanError, match="fits on no node type"):
        require_feasible(plan)


def test_objectives_differ_where_they_should():
    spec = ClusterSpec.model_validate(cluster(node_type(
        name="a100", gpu="a100-80g-sxm", gpus_per_node=4)))
    quality = plan_cluster(spec, model="llama-3.1-8b").node_types[0].choice
    fast = plan_cluster(spec, model="llama-3.1-8b", objective="throughput").node_types[0].choice
    assert quality.precision in ("f16", "bf16")
    assert fast.node_tokens_per_s >= quality.node_tokens_per_s
    assert fast.quality_rank < quality.quality_rank
    assert "objective throughput (" in fast.why


def test_plan_cluster_policy_keyword_is_a_deprecated_objective():
    spec = ClusterSpec.model_validate(cluster())
    with pytest.deprecated_call(match=r"policy=\.\.\.\) is deprecated; pass objective"):
        plan = plan_cluster(spec, policy="throughput")
    assert plan.objective == plan.node_types[0].objective == "throughput"
    with pytest.raises(UserError, match="objective 'quality' and policy 'throughput'"):
        plan_cluster(spec, objective="quality", policy="throughput")


def test_node_type_objective_overrides_the_planners():
    spec = ClusterSpec.model_validate(cluster(node_type(objective="throughput")))
    plan = plan_cluster(spec)
    assert (plan.objective, plan.node_types[0].objective) == ("quality", "throughput")


def test_a_plan_serialized_with_policy_still_loads():
    plan = plan_cluster(ClusterSpec.model_validate(cluster()))
    old = plan.model_dump()
    old["policy"] = old.pop("objective")
    for n in old["node_types"]:
        n["policy"] = n.pop("objective")
    assert Plan.model_validate(old) == plan


def test_calibrated_efficiencies_are_fractions():
    for b in ("trtllm", "vllm", "llamacpp", "llamaserver"):
        assert 0.3 < decode_efficiency(b) < 1.0
        assert 0.3 < prefill_efficiency(b) < 1.0
    assert decode_efficiency("trtllm") == decode_efficiency("vllm")


def test_a100_prefill_is_far_faster_than_3090():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    a100, r3090 = (n.choice.perf.prefill_tokens_per_s for n in plan.node_types)
    assert a100 / r3090 > 5  # ~9x between the two (docs/planning.md: worked example)


def test_weight_sizes_are_published_where_facts_has_them():
    m = get_model("llama-3.1-70b")
    assert get_precision("q4_k_m").weight_bytes(m)[0] == 42.52e9
    assert get_precision("awq_int4").weight_bytes(m)[0] == 39.77e9
    # GPTQ is estimated by the same W4A16 arithmetic and lands beside AWQ's published size
    assert get_precision("gptq_int4").weight_bytes(m)[0] == pytest.approx(39.77e9, rel=0.01)
    assert quality_order()[0] == "f16" and quality_order()[-1] == "q2_k"


# ---- properties ------------------------------------------------------------------------

GPU_IDS = ["rtx-3090", "rtx-4090", "a100-80g-sxm", "a100-40g-sxm", "l4", "h100-sxm", "t4"]
PS = PlannerSpec()


def _node(gpu_id, gpus, vram_gib, nvlink=True):
    gpu = dataclasses.replace(get_gpu(gpu_id), vram_gib=vram_gib)
    return NodeRequest("n", NodeHardware(gpu, gpus, nvlink))


@settings(max_examples=60, deadline=None)
@given(gpu_id=st.sampled_from(GPU_IDS), gpus=st.sampled_from([1, 2, 4, 8]),
       vram=st.floats(8, 200), model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b"]))
def test_no_plan_exceeds_memory(gpu_id, gpus, vram, model):
    n = plan_node(_node(gpu_id, gpus, vram), get_model(model), PS)
    for c in [n.choice] if n.choice else []:
        m = c.memory
        assert m.weights_bytes + m.overhead_bytes + m.kv_room_bytes <= m.usable_bytes + 1
        assert m.kv_tokens * m.kv_bytes_per_token <= m.kv_room_bytes
        assert m.usable_bytes <= c.gpus_per_replica * vram * GIB * PS.usable_memory_fraction + 1
        assert m.kv_tokens >= PS.min_context


@settings(max_examples=60, deadline=None)
@given(gpu_id=st.sampled_from(GPU_IDS), gpus=st.sampled_from([1, 2, 4]),
       vram=st.floats(8, 160), extra=st.floats(0.5, 80),
       model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b"]))
def test_more_memory_never_lowers_the_chosen_precision(gpu_id, gpus, vram, extra, model):
    arch = get_model(model)
    small = plan_node(_node(gpu_id, gpus, vram), arch, PS).choice
    big = plan_node(_node(gpu_id, gpus, vram + extra), arch, PS).choice
    if small is not None:
        assert big is not None and big.quality_rank >= small.quality_rank


@settings(max_examples=40, deadline=None)
@given(mem=st.floats(0.2, 4), extra=st.floats(0.05, 4))
def test_more_cpu_memory_never_lowers_the_chosen_precision(mem, extra):
    def node(gb):
        return NodeRequest("c", NodeHardware(None, 0, False, CPUHardware(2, gb * GB, 16, 0.3)))

    arch = get_model("gemma-3-270m")
    ps = PlannerSpec(min_context=2048)
    small = plan_node(node(mem), arch, ps).choice
    big = plan_node(node(mem + extra), arch, ps).choice
    if small is not None:
        assert big is not None and big.quality_rank >= small.quality_rank
