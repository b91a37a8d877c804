"""Plans the named checkpoints can satisfy (planner/checkpoints.py): where a spec names
its checkpoints, a (precision, backend) is offered only if its backend serves it from one
of them, or quantizes it from one at build time on GPUs that hold it unquantized."""

from orchestrator.backends import BACKENDS
from orchestrator.build.spec import build_specs
from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.models.catalog import get_model
from orchestrator.models.precision import get_precision
from orchestrator.planner.checkpoints import starting_point
from orchestrator.planner.nodes import hardware_of
from orchestrator.planner.select import plan_cluster
from tests.conftest import CLUSTERS, cluster, node_type


def _spec(sources: dict, *nts):
    return ClusterSpec.model_validate(cluster(*(nts or (node_type(count=2),)),
                                              artifacts={"sources": sources}))


def _rejection(n, precision, backend):
    (r,) = [r for r in n.rejected if (r.precision, r.backend) == (precision, backend)]
    return r


def test_mixed_plan_names_the_checkpoints_it_starts_from():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "mixed.yaml"))
    a100, r3090 = plan.node_types
    assert (a100.choice.backend, a100.choice.checkpoint) == ("trtllm", "hf")
    assert (r3090.choice.backend, r3090.choice.precision, r3090.choice.checkpoint) == (
        "trtllm", "awq_int4", "modelopt_w4a16")
    assert "from a ModelOpt W4A16 AWQ checkpoint" in r3090.choice.why


def test_an_autoawq_checkpoint_sends_the_3090s_to_vllm_and_says_why_not_tensorrt_llm():
    spec = _spec({"hf": "/m/f16", "awq": "/m/awq"})
    n = plan_cluster(spec).node_types[0]
    assert (n.choice.backend, n.choice.precision, n.choice.checkpoint) == (
        "vllm", "awq_int4", "awq")
    r = _rejection(n, "awq_int4", "trtllm")
    assert r.kind == "checkpoint"
    assert "needs a ModelOpt W4A16 AWQ checkpoint" in r.reason
    assert "141.20 GB (this node type has 51.54 GB)" in r.reason  # can't quantize F16 here
    assert "AutoAWQ INT4 checkpoint (awq), which vLLM loads as awq_marlin" in r.reason
    (bs,) = build_specs(plan_cluster(spec), spec)
    assert (bs.backend, bs.source_kind, bs.source) == ("vllm", "awq", "/m/awq")
    assert bs.params["quantization"] == "awq_marlin"


def test_a_gguf_only_cluster_plans_llama_cpp():
    n = plan_cluster(_spec({"gguf": "/m/70b-f16.gguf"})).node_types[0]
    assert (n.choice.backend, n.choice.checkpoint) == ("llamacpp", "gguf")
    assert _rejection(n, "awq_int4", "vllm").reason.startswith(
        "needs an AutoAWQ INT4 checkpoint (artifacts.sources.awq); the spec has a GGUF file "
        "(gguf)")


def test_build_time_quantization_needs_gpus_that_hold_the_f16_weights():
    model, trt = get_model("llama-3.1-70b"), BACKENDS["trtllm"]
    big = hardware_of(load_cluster_spec(CLUSTERS / "mixed.yaml").node_types[0])  # 4x A100
    small = hardware_of(ClusterSpec.model_validate(cluster(node_type())).node_types[0])
    assert starting_point(trt, get_precision("int8_sq"), frozenset({"hf"}), big, model) == (
        "hf", None)
    kind, why = starting_point(trt, get_precision("int8_sq"), frozenset({"hf"}), small, model)
    assert kind is None and "quantized at build time" in why
    # a ModelOpt checkpoint needs no quantizing GPU memory
    assert starting_point(trt, get_precision("awq_int4"), frozenset({"modelopt_w4a16"}),
                          small, model) == ("modelopt_w4a16", None)


def test_vllm_serves_fp8_from_a_modelopt_checkpoint_with_its_loader():
    nt = node_type(name="l40s-x2", gpu="l40s", interconnect="pcie",
                   precisions=["fp8_w8a8"], backends=["vllm"])
    spec = _spec({"modelopt_fp8": "/m/fp8"}, nt)
    (bs,) = build_specs(plan_cluster(spec, model="llama-3.1-8b"), spec)
    assert (bs.source_kind, bs.params["quantization"]) == ("modelopt_fp8", "modelopt")


def test_no_named_checkpoints_plans_as_before():
    n = plan_cluster(ClusterSpec.model_validate(cluster(node_type()))).node_types[0]
    assert n.choice.checkpoint is None
    assert "the spec names no checkpoints" in n.choice.why
    assert not [r for r in n.rejected if r.kind == "checkpoint"]
