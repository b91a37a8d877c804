"""Deploy the app on a test cluster and talk to it over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

# The reference mixed cluster emulated on this machine: a 4x A100 node and two 2x3090 nodes
# (the head, with no GPU group, joins them in conftest.ray_cluster).
A100, R3090 = "a100-80g-sxm-x4-nvlink", "rtx-3090-x2-nvlink"
MIXED_NODES = {
    "a100": {"CPU": 1, "GPU": 4, f"gpu_group:{A100}": 1},
    "r3090-a": {"CPU": 1, "GPU": 2, f"gpu_group:{R3090}": 1},
    "r3090-b": {"CPU": 1, "GPU": 2, f"gpu_group:{R3090}": 1},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(app, port: int, timeout_s: float = 180) -> str:
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(app, name="orchestrator", route_prefix="/", blocking=False)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = get(base + "/health")[1]
            if isinstance(body, dict) and body.get("status") == "ok":
                return base
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} not healthy in {timeout_s} s")


def get(url: str, headers: dict | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, json.loads(r.read().decode()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), dict(e.headers)


def post(url: str, body, headers: dict | None = None, timeout: float = 120):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, _json(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), dict(e.headers)


def _json(raw: bytes):
    try:
        return json.loads(raw.decode())
    except ValueError:
        return raw.decode()


def wait_for(cond, timeout_s: float, what: str, period_s: float = 0.5) -> None:
    """Poll `cond` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(period_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def replicas(base: str) -> dict[str, int]:
    """Live replicas per pool, as the ingress lists them."""
    return {dep: len(p["replicas"]) for dep, p in get(f"{base}/status")[1]["pools"].items()}


def build_demo(store, backend: str | None = None):
    """The demo's plan (clusters/local.yaml) and its artifacts, built into `store`:
    {node type: artifact path}. `backend`: every node type on that one instead of the
    demo's (the real-engine suites run on llama-server and on llama-cpp-python)."""
    from orchestrator.build.runner import run_builds
    from orchestrator.build.spec import build_specs
    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from tests.conftest import CLUSTERS

    spec = load_cluster_spec(CLUSTERS / "local.yaml")
    if backend is not None:
        spec = spec.model_copy(update={"node_types": [
            nt.model_copy(update={"backends": [backend]}) for nt in spec.node_types]})
    plan = plan_cluster(spec)
    outcomes = run_builds(build_specs(plan, spec), store)
    assert all(o.ok for o in outcomes), outcomes
    return plan, {o.node_type: o.path for o in outcomes}


def deploy_autoscaled(spec, model: str) -> tuple[str, dict]:
    """Deploy `spec` the way `up` does (a Serve config with the application-level autoscaling
    policy), with simulated engines (the serving path is under test, not the engines).
    Returns the base URL, without waiting, and each deployment's scaling bounds."""
    from orchestrator.config import ServingSpec
    from orchestrator.planner.select import plan_cluster
    from orchestrator.serve import lifecycle
    from orchestrator.serve.contract import app_args

    args, kwargs = app_args(plan_cluster(spec), spec, model_name=model, engine="simulated")
    args = args.model_copy(update={"serving": ServingSpec(max_waiting=4, api_keys_env=None)})
    port = free_port()
    lifecycle.deploy(args, kwargs, "127.0.0.1", port)
    return f"http://127.0.0.1:{port}", args.scaling


def settled(base: str, hold_s: float = 1.5) -> bool:
    """Idle now and still idle `hold_s` later: replicas report every half second, so a
    first idle look may predate the cancellations that are still on their way (a
    llama-server replica counts a left client's slot as running until the server lets
    it go, docs/backends.md)."""
    if not idle(base):
        return False
    time.sleep(hold_s)
    return idle(base)


def idle(base: str) -> bool:
    """Nothing in flight at the ingress, and no replica's engine waiting or running (the
    engines' own counts, which replicas report every half second)."""
    st = get(f"{base}/status")[1]
    reps = [r for p in st["pools"].values() for r in p["replicas"]]
    return st["ingress"]["in_flight"] == 0 and all(
        r["engine_waiting"] == 0 and r["engine_running"] == 0 and r["waiting"] == 0
        for r in reps)
