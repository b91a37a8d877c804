"""Scale from zero for real (Ray Serve's application-level policy on an emulated mixed
cluster, simulated engines): the F16 pool starts at zero replicas; requests it would have
taken count as its demand and bring it back, whether other pools serve them meanwhile
(unpinned) or they are refused (pinned to F16); idle takes it back to zero; and while it is
at zero, the requests the 4-bit pool serves do not wait on it."""

import time
import urllib.request

import pytest

from orchestrator.config import ClusterSpec, load_cluster_spec
from tests import dashboard
from tests.conftest import CLUSTERS
from tests.ray.serve_util import (A100, MIXED_NODES, R3090, deploy_autoscaled, get,
                                  post, replicas, wait_for)

pytestmark = pytest.mark.ray

NODES = {k: v for k, v in MIXED_NODES.items() if k != "r3090-b"}
MODEL = "llama-3.1-70b"
F16 = f"pool-{A100}"


def spec():
    data = load_cluster_spec(CLUSTERS / "mixed.yaml").model_dump(mode="json",
                                                                 exclude_none=True)
    for nt in data["node_types"]:
        nt["count"] = 1
        nt.pop("addresses", None)
        if nt["name"] == A100:
            nt["autoscaling"] = {"min_replicas": 0, "scale_to_zero": True,
                                 "initial_replicas": 0}
        else:
            nt["autoscaling"] = {"min_replicas": 1}
    data["autoscaling"] = {"up_cooldown_s": 1, "down_delay_s": 4}
    return ClusterSpec.model_validate(data)


@pytest.fixture(scope="module")
def endpoint(ray_cluster):
    from ray import serve

    base, scaling = deploy_autoscaled(spec(), MODEL)
    assert scaling[F16]["min_replicas"] == 0 and scaling[F16]["initial_replicas"] == 0

    def started():
        try:
            return get(f"{base}/health")[1]["replicas"][f"pool-{R3090}"] == 1
        except (OSError, KeyError, TypeError):
            return False

    wait_for(started, 180, "the 4-bit pool serves")
    yield base
    serve.shutdown()


def complete(base, model=MODEL):
    return post(f"{base}/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 4},
                timeout=60)


def test_starts_at_zero_and_the_other_pool_serves_without_waiting_on_it(endpoint):
    assert replicas(endpoint)[F16] == 0
    code, health, _ = get(f"{endpoint}/health")
    assert code == 200 and health["status"] == "degraded"
    assert health["pools"][F16]["state"] == "loading"
    # Before, each request waited 5 s for the empty pool's router; these take well under.
    for _ in range(3):
        t0 = time.monotonic()
        code, _, headers = complete(endpoint, f"{MODEL}:awq_int4")
        assert code == 200 and time.monotonic() - t0 < 4.0


def test_unpinned_demand_it_would_take_brings_it_back(endpoint):
    def back():
        code, _, headers = complete(endpoint)  # served by the 4-bit pool meanwhile
        assert code == 200, code
        return replicas(endpoint)[F16] >= 1

    wait_for(back, 90, "the F16 pool comes back from zero")
    decided = get(f"{endpoint}/status")[1]["autoscaling"]["pools"][F16]
    assert decided["min"] == 0 and decided["desired"] >= 1


def test_idle_takes_it_back_to_zero(endpoint):
    wait_for(lambda: replicas(endpoint)[F16] == 0, 90, "idle scales the F16 pool to zero")


def test_pinned_requests_refused_at_zero_bring_it_back(endpoint):
    code, body, _ = complete(endpoint, f"{MODEL}:f16")
    assert code == 503 and body["error"]["code"] == "pool_unavailable"

    def served():
        code, _, headers = complete(endpoint, f"{MODEL}:f16")
        return code == 200 and headers.get("x-orchestrator-precision") == "f16"

    wait_for(served, 90, "a pinned F16 request is served after scale-from-zero")


def test_the_dashboards_autoscaling_series_are_exported(endpoint):
    """The dashboard's autoscaling panels against this live /metrics (the rest of its
    series: test_serve_llamacpp.py)."""
    def exported():
        with urllib.request.urlopen(f"{endpoint}/metrics", timeout=30) as r:
            text = r.read().decode()
        return dashboard.missing(
            text, lambda name: name.startswith("orchestrator_autoscaling_")) == []

    wait_for(exported, 30, "the autoscaling decisions reach /metrics")
