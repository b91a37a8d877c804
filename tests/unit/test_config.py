import warnings

import pytest

from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.errors import SpecError
from tests.conftest import CLUSTERS, cluster, node_type


@pytest.mark.parametrize("path", sorted(CLUSTERS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_load(path):
    spec = load_cluster_spec(path)
    assert spec.node_types


def test_required_cluster_specs_exist():
    names = {p.stem for p in CLUSTERS.glob("*.yaml")}
    assert {"local", "homelab-2x3090", "a100-4x", "mixed", "seed-table"} <= names


def test_mixed_has_two_3090_nodes_and_one_a100_node():
    spec = load_cluster_spec(CLUSTERS / "mixed.yaml")
    by_gpu = {nt.gpu: nt for nt in spec.node_types}
    assert by_gpu["rtx-3090"].count == 2 and by_gpu["rtx-3090"].interconnect == "nvlink"
    assert by_gpu["a100-80g-sxm"].count == 1 and by_gpu["a100-80g-sxm"].gpus_per_node == 4


def test_local_is_cpu_only():
    spec = load_cluster_spec(CLUSTERS / "local.yaml")
    assert len(spec.node_types) == 2 and all(nt.is_cpu for nt in spec.node_types)


@pytest.mark.parametrize("data, must_contain", [
    (cluster(node_type(nodeSelecter={"a": "b"})),
     ["node_types[0] (rtx-3090-x2-nvlink)", "unknown field 'nodeSelecter'", "valid fields:",
      "labels"]),
    (cluster(planner={"objectve": "quality"}), ["planner", "unknown field 'objectve'",
                                                "objective"]),
    (cluster(node_type(gpu="rtx-9999")),
     ["node_types[0] (rtx-3090-x2-nvlink).gpu", "unknown GPU model 'rtx-9999'", "rtx-3090",
      "a100-80g-sxm"]),
    (cluster(node_type(count=0)), ["node_types[0] (rtx-3090-x2-nvlink).count",
                                   "greater than 0", "got 0"]),
    (cluster(node_type(count=-2)), [".count", "got -2"]),
    (cluster(node_type(gpus_per_node=0)), [".gpus_per_node", "got 0"]),
    (cluster(node_type(), node_type()), ["duplicate node type name 'rtx-3090-x2-nvlink'"]),
    (cluster(node_type(interconnect="infiniband")), [".interconnect", "'nvlink' or 'pcie'",
                                                     "got 'infiniband'"]),
    (cluster(node_type(gpu="rtx-4090")), ["rtx-4090 has no NVLink; use interconnect: pcie"]),
    (cluster(node_type(gpu=None, gpus_per_node=None)), ["set exactly one of 'gpu'"]),
    (cluster(model="llama-9"), ["model", "unknown model 'llama-9'", "llama-3.1-70b"]),
    (cluster(planner={"objective": "cheapest"}), ["planner.objective",
                                                  "unknown planner objective",
                                                  "balanced, quality, throughput"]),
    (cluster(node_type(objective="cheapest")), ["node_types[0] (rtx-3090-x2-nvlink).objective",
                                                "unknown planner objective 'cheapest'"]),
    (cluster(planner={"policy": "quality", "objective": "throughput"}),
     ["planner.policy and planner.objective are both set", "keep only planner.objective"]),
    (cluster(node_type(policy="quality", objective="throughput")),
     ["node_types (rtx-3090-x2-nvlink).policy and node_types (rtx-3090-x2-nvlink).objective "
      "are both set"]),
    (cluster(planner={"min_precision": "q3"}), ["planner.min_precision", "unknown precision"]),
    (cluster(node_type(precisions=["q4_k_m", "fp4"])), ["unknown precision 'fp4'"]),
    (cluster(node_type(backends=["exllama"])), ["unknown backend 'exllama'", "llamacpp"]),
    (cluster(node_type(cpu={"cores": 0, "memory_gb": 1}, gpu=None, gpus_per_node=None)),
     [".cpu.cores", "got 0"]),
])
def test_bad_spec_names_file_field_and_choices(write_spec, data, must_contain):
    path = write_spec(data)
    with pytest.raises(SpecError) as err, warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad spec fails on its error, not on a warning
        load_cluster_spec(path)
    msg = str(err.value)
    assert str(path) in msg
    for part in must_contain:
        assert part in msg, f"{part!r} not in:\n{msg}"


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_cluster_spec(bad)
    with pytest.raises(SpecError, match="nope.yaml: cannot read cluster spec"):
        load_cluster_spec(tmp_path / "nope.yaml")
    bad.write_text("- just a list\n")
    with pytest.raises(SpecError, match="a cluster spec is a mapping"):
        load_cluster_spec(bad)


def test_gpu_node_type_resource_name():
    spec = ClusterSpec.model_validate(cluster())
    assert spec.node_types[0].resource == "gpu_group:rtx-3090-x2-nvlink"
    with pytest.raises(SpecError, match="no node type 'x'; node types: rtx-3090-x2-nvlink"):
        spec.node_type("x")


@pytest.mark.parametrize("shipped", sorted(CLUSTERS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_use_no_deprecated_key(shipped):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        load_cluster_spec(shipped)


def test_planner_policy_still_loads_as_objective_with_a_deprecation(write_spec):
    path = write_spec(cluster(node_type(policy="balanced"), planner={"policy": "throughput"}))
    with pytest.warns(DeprecationWarning) as got:
        spec = load_cluster_spec(path)
    assert spec.planner.objective == "throughput"
    assert spec.node_types[0].objective == "balanced"
    messages = [str(w.message) for w in got]
    assert "planner.policy is deprecated; write planner.objective" in messages
    assert ("node_types (rtx-3090-x2-nvlink).policy is deprecated; write "
            "node_types (rtx-3090-x2-nvlink).objective") in messages


def test_deprecated_planner_policy_is_still_validated(write_spec):
    path = write_spec(cluster(planner={"policy": "cheapest"}))
    with pytest.warns(DeprecationWarning), pytest.raises(SpecError) as err:
        load_cluster_spec(path)
    assert "planner.objective: unknown planner objective 'cheapest'" in str(err.value)
