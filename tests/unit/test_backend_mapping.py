"""What the plan hands each engine, checked at the arguments a backend gives it (no engine
runs here): the KV-cache type (llama-server's -ctk/-ctv, vLLM's kv_cache_dtype,
TensorRT-LLM's kv_cache_quant_algo; llama-cpp-python's type_k/type_v are read back from a
real engine in tests/integration/test_engines.py), vLLM's
quantization for every precision it is offered, and vLLM's running and waiting counts
taken from its scheduler's statistics."""

from orchestrator.backends import get_backend
from orchestrator.backends.llamaserver import server_command
from orchestrator.build.spec import build_specs
from orchestrator.config import ClusterSpec
from orchestrator.planner.select import plan_cluster
from tests.conftest import cluster, node_type


def _plan(nt: dict, **planner):
    spec = ClusterSpec.model_validate(cluster(nt, planner=planner or None)
                                      if planner else cluster(nt))
    return spec, plan_cluster(spec)


def test_llamacpp_backends_pass_a_quantized_cache_to_the_engine():
    nt = node_type(precisions=["q4_k_m"], backends=["llamaserver"])
    spec, plan = _plan(nt, kv_cache_dtype="q8_0")
    n = plan.node_types[0]
    assert n.choice.kv_cache_dtype == "q8_0"
    args = get_backend("llamaserver").engine_args(n, spec.model, "/store/key")
    assert args["cache_type"] == "q8_0"
    cmd = " ".join(server_command("/b", "/m.gguf", 1, slots=1, ctx_per_slot=512, threads=1,
                                  gpu_layers=0, cache_type=args["cache_type"]))
    assert "-ctk q8_0 -ctv q8_0" in cmd and "-fa" in cmd.split()
    spec, plan = _plan(node_type(precisions=["q4_k_m"], backends=["llamacpp"]),
                       kv_cache_dtype="q4_0")
    args = get_backend("llamacpp").engine_args(plan.node_types[0], spec.model, "/s")
    assert args["cache_type"] == "q4_0"


def test_fp16_cache_adds_nothing_to_the_engines_arguments():
    spec, plan = _plan(node_type(precisions=["q4_k_m"], backends=["llamaserver"]))
    n = plan.node_types[0]
    assert get_backend("llamaserver").engine_args(n, spec.model, "/s")["cache_type"] is None
    assert "-ctk" not in server_command("/b", "/m", 1, slots=1, ctx_per_slot=512, threads=1,
                                        gpu_layers=0)


def test_vllm_and_trtllm_get_fp8_where_the_plan_chose_it():
    nt = node_type(name="l40s-x2", gpu="l40s", interconnect="pcie",
                   precisions=["awq_int4"], backends=["vllm"])
    spec, plan = _plan(nt, kv_cache_dtype="fp8")
    (bs,) = build_specs(plan, spec)
    assert bs.params["kv_cache_dtype"] == "fp8"
    spec, plan = _plan({**nt, "backends": ["trtllm"]}, kv_cache_dtype="fp8")
    (bs,) = build_specs(plan, spec)
    assert bs.params["kv_cache_quant_algo"] == "FP8"
    spec, plan = _plan({**nt, "backends": ["trtllm"]})  # auto, fp16 fits
    (bs,) = build_specs(plan, spec)
    assert bs.params["kv_cache_quant_algo"] is None


def test_every_precision_vllm_is_offered_maps_to_a_quantization_or_full_weights():
    """A planned precision must reach vLLM as a quantization it applies (or loads from the
    checkpoint kind the build names), never as F16 weights at a smaller memory estimate."""
    from orchestrator.backends.vllm import QUANTIZATION, SOURCE_KIND, Vllm

    for pid in Vllm.gpu_support:
        assert pid in ("f16", "bf16") or pid in QUANTIZATION, pid
        if pid in SOURCE_KIND:  # pre-quantized checkpoints: the kernel for their format
            assert QUANTIZATION[pid].startswith(SOURCE_KIND[pid])
    assert "int8_sq" not in Vllm.gpu_support


def test_vllm_counts_come_from_its_scheduler_once_it_has_stepped():
    import types

    from orchestrator.backends.vllm import SchedulerCounts, VllmEngine

    e = VllmEngine("/m")
    logger = SchedulerCounts(e)
    assert e.counts() == (0, 0)
    e.waiting = {"a": (10, 5), "b": (10, 5)}  # ours: no first output yet
    assert e.counts() == (0, 2)
    # vLLM's scheduler: one prefilling (running), one queued, one preempted and deferred
    logger.record(types.SimpleNamespace(num_running_reqs=1, num_waiting_reqs=1,
                                        num_skipped_waiting_reqs=1), None)
    assert e.counts() == (1, 2) and e.stats().running == 1
    logger.record(None, object())  # an iteration without scheduler stats changes nothing
    assert e.counts() == (1, 2)
    e.waiting = {}  # all finished: its last count outlives the step that made it
    assert e.counts() == (0, 0)
