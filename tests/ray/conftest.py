"""A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster), one per module."""

from __future__ import annotations

import os

import pytest

# Ray would otherwise try to send usage statistics; this machine reaches no such host.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def ray_cluster(request):
    """Head without custom resources, plus one node per entry of the module's NODES:
    {name: resources}. Yields (cluster, {name: node_id})."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    nodes_spec = getattr(request.module, "NODES")
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    ids = {}
    for name, resources in nodes_spec.items():
        res = dict(resources)
        gpus = res.pop("GPU", 0)
        node = cluster.add_node(num_cpus=res.pop("CPU", 1), num_gpus=gpus, resources=res)
        ids[name] = node.node_id
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, ids
    finally:
        ray.shutdown()
        cluster.shutdown()
