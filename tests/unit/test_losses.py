"""Why a pool shrank: a replica whose node left the cluster, or one that stopped."""

from orchestrator.serve.losses import Losses


def test_a_replica_whose_node_left_is_named_with_its_node():
    lost = Losses()
    lost.update({"pool-a": {"r1": {"node_id": "n1" * 8}, "r2": {"node_id": "n2" * 8}}},
                {"n1" * 8, "n2" * 8})
    assert lost.of("pool-a") is None
    lost.update({"pool-a": {"r1": {"node_id": "n1" * 8}}}, {"n1" * 8})
    assert lost.of("pool-a")["replica"] == "r2"
    assert "left the Ray cluster" in lost.of("pool-a")["why"]
    lost.update({"pool-a": {}}, {"n1" * 8})
    assert lost.of("pool-a")["replica"] == "r1"
    assert "the replica stopped" in lost.of("pool-a")["why"]
