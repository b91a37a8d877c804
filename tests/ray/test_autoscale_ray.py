"""Autoscaling for real: Serve's application-level policy (serve/autoscaler.py) on an
emulated mixed cluster (one 4x A100 node, three 2x3090 nodes, a CPU head; simulated
engines). A load ramp grows the 3090 pool up to its inventory and never past it, the F16
pool stays put, idle shrinks it again, and a manual override pins it."""

import concurrent.futures as cf
import threading
import time

import pytest

from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.serve import lifecycle
from tests.conftest import CLUSTERS
from tests.ray.serve_util import (A100, MIXED_NODES, R3090, deploy_autoscaled, free_port, get,
                                  post, replicas, wait_for)

pytestmark = pytest.mark.ray

NODES = {**MIXED_NODES, "r3090-c": MIXED_NODES["r3090-a"]}
MODEL = "llama-3.1-70b"
POOL = f"pool-{R3090}"


def spec():
    data = load_cluster_spec(CLUSTERS / "mixed.yaml").model_dump(mode="json",
                                                                 exclude_none=True)
    for nt in data["node_types"]:
        if nt["name"] == R3090:
            nt.update(count=3, autoscaling={"min_replicas": 1})
    data["autoscaling"] = {"up_cooldown_s": 2, "down_delay_s": 6}
    return ClusterSpec.model_validate(data)


@pytest.fixture(scope="module")
def endpoint(ray_cluster):
    from ray import serve

    base, scaling = deploy_autoscaled(spec(), MODEL)
    assert scaling[POOL] == {"min_replicas": 1, "max_replicas": 3, "initial_replicas": 1}
    lifecycle.wait_ready(base, 180)
    yield base
    serve.shutdown()


def test_starts_at_min(endpoint):
    assert replicas(endpoint) == {f"pool-{A100}": 1, POOL: 1}


def test_ramp_grows_the_3090_pool_to_its_inventory_and_no_further(endpoint):
    stop = threading.Event()
    seen = []

    def client(i):
        while not stop.is_set():
            # ~10 s of simulated 3090 decoding each: 16 clients keep ~16 sequences in
            # flight, where one replica holds 6
            post(f"{endpoint}/v1/completions", {"model": f"{MODEL}:awq_int4",
                                                "prompt": f"load {i}", "max_tokens": 200})

    with cf.ThreadPoolExecutor(16) as pool:
        for i in range(16):
            pool.submit(client, i)
        try:
            t0 = time.monotonic()

            def grown():
                seen.append(replicas(endpoint)[POOL])
                return seen[-1] == 3

            wait_for(grown, 90, "the 3090 pool reaches its 3 GPU groups")
            grew_in = time.monotonic() - t0
            time.sleep(5)  # held at the inventory under continued load
            seen.append(replicas(endpoint)[POOL])
        finally:
            stop.set()
    assert max(seen) == 3 and seen[-1] == 3, seen
    assert replicas(endpoint)[f"pool-{A100}"] == 1  # pinned 4-bit load never grows F16
    decided = get(f"{endpoint}/status")[1]["autoscaling"]["pools"]
    assert decided[POOL]["max"] == 3 and decided[POOL]["reason"]
    print(f"grew 1 -> 3 in {grew_in:.1f} s")


def test_idle_shrinks_back_to_min(endpoint):
    wait_for(lambda: replicas(endpoint)[POOL] == 1, 90, "idle shrinks the pool to 1")
    reason = get(f"{endpoint}/status")[1]["autoscaling"]["pools"][POOL]["reason"]
    assert reason


def test_manual_override_pins_and_releases(endpoint):
    from click.testing import CliRunner

    from orchestrator.cli import main

    r = CliRunner().invoke(main, ["scale", R3090, "5", "--address", "auto"])
    assert r.exit_code != 0 and "1 to 3 replicas" in r.output
    r = CliRunner().invoke(main, ["scale", R3090, "2", "--address", "auto"])
    assert r.exit_code == 0, r.output
    wait_for(lambda: replicas(endpoint)[POOL] == 2, 60, "the override takes the pool to 2")
    time.sleep(8)  # idle longer than down_delay_s: the override holds
    assert replicas(endpoint)[POOL] == 2
    assert "manual override" in get(f"{endpoint}/status")[1]["autoscaling"]["pools"][POOL][
        "reason"]
    r = CliRunner().invoke(main, ["scale", R3090, "auto", "--address", "auto"])
    assert r.exit_code == 0, r.output
    wait_for(lambda: replicas(endpoint)[POOL] == 1, 60, "released, idle shrinks it again")


def test_up_deploys_an_autoscaled_spec_through_the_cli(endpoint, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from ray import serve

    from orchestrator.cli import main

    serve.shutdown()  # the module's app makes room for the one `up` deploys
    monkeypatch.setattr(lifecycle, "STATE", tmp_path / "state.json")
    port = free_port()
    r = CliRunner().invoke(main, ["up", str(CLUSTERS / "mixed-autoscale.yaml"), "--address",
                                  "auto", "--simulated-engines", "--port", str(port),
                                  "--timeout", "180"])
    assert r.exit_code == 0, r.output
    base = f"http://127.0.0.1:{port}"
    status = get(f"{base}/status")[1]
    assert {d: len(p["replicas"]) for d, p in status["pools"].items()} == {
        f"pool-{A100}": 1, POOL: 1}
    assert status["autoscaling"]["pools"][POOL]["max"] == 6  # the spec's inventory
    r = CliRunner().invoke(main, ["status", "--address", "auto"])
    assert r.exit_code == 0 and "Autoscaling" in r.output, r.output
