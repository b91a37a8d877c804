import json

import pytest

from orchestrator.config import ClusterSpec
from orchestrator.errors import UserError
from orchestrator.hardware.discovery import discover
from orchestrator.hardware.fake_nvml import FakeNVML
from orchestrator.hardware.resources import node_resources
from tests.conftest import cluster, node_type


def inv(name):
    return discover(FakeNVML.from_name(name))


def test_2x3090_advertises_one_nvlinked_pair():
    res = node_resources(inv("2x3090-nvlink"))
    assert res.num_gpus == 2
    assert res.resources == {"gpu_group:rtx-3090-x2-nvlink": 1.0}
    args = res.ray_start_args()
    assert args[0] == "--num-gpus=2"
    assert json.loads(args[1].removeprefix("--resources=")) == res.resources
    assert "orchestrator.io/node-type=rtx-3090-x2-nvlink" in args[2]


def test_two_pairs_count_two_units():
    assert node_resources(inv("4x3090-two-bridges")).resources == {
        "gpu_group:rtx-3090-x2-nvlink": 2.0}


def test_cluster_spec_names_the_groups():
    spec = ClusterSpec.model_validate(cluster(node_type(name="homelab")))
    res = node_resources(inv("2x3090-nvlink"), spec)
    assert res.resources == {"gpu_group:homelab": 1.0} and not res.notes


def test_group_matching_no_node_type_is_noted():
    spec = ClusterSpec.model_validate(cluster(node_type(name="homelab")))
    res = node_resources(inv("4xa100-sxm"), spec)
    assert res.resources == {"gpu_group:a100-80g-sxm-x4-nvlink": 1.0}
    assert "match no node type" in res.notes[0]


def test_cpu_only_node_needs_a_node_type():
    cpu = inv("no-driver")
    with pytest.raises(UserError, match="--node-type"):
        node_resources(cpu)
    res = node_resources(cpu, node_type="cpu-quality")
    assert res.num_gpus == 0 and res.resources == {"gpu_group:cpu-quality": 1.0}


def test_node_type_must_exist_in_the_spec():
    spec = ClusterSpec.model_validate(cluster())
    with pytest.raises(UserError, match="no node type 'nope'"):
        node_resources(inv("2x3090-nvlink"), spec, "nope")


def test_node_type_on_a_mixed_box_is_refused():
    with pytest.raises(UserError, match="3 kinds of GPU group"):
        node_resources(inv("mixed-pcie"), node_type="x")


def test_every_writer_of_the_gpu_group_resource_agrees():
    from orchestrator.defaults import gpu_group_resource
    from orchestrator.planner.select import plan_cluster

    spec = ClusterSpec.model_validate(cluster())
    assert gpu_group_resource("rtx-3090-x2-nvlink") == "gpu_group:rtx-3090-x2-nvlink"
    assert spec.node_types[0].resource == gpu_group_resource("rtx-3090-x2-nvlink")
    res = node_resources(inv("2x3090-nvlink"), spec)
    choice = plan_cluster(spec).node_types[0].choice
    assert set(res.resources) == {spec.node_types[0].resource}
    assert spec.node_types[0].resource in choice.replica_resources
