"""Overload and faults on the real llama.cpp pools: the demo (clusters/local.yaml, Gemma 3
270M at F16 and Q4_K_M) on two emulated CPU node types, the engines real, so the figures
are the engines' as much as the serving path's (benchmarks/overload.py measures the
serving path alone, on simulated engines).

  overload    saturate the F16 pool with pinned requests (~400-token prompts, 4 tokens
              out) to learn what it completes per second, offer --factor times that open
              loop for --overload-s, then measure recovery and every process's memory
  disconnect  --clients streaming clients that leave before their first token: seconds
              until nothing is in flight, waiting or running, then one answer per pool
  replica     10 unpinned non-streaming requests in flight, the Q4_K_M replica SIGKILLed:
              how many are answered
  node        the Q4_K_M node type's only node removed: unpinned requests go to F16,
              pinned ones get 503 pool_unavailable

Usage: .venv/bin/python benchmarks/real_faults.py [--factor 10] [--overload-s 20] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from orchestrator.bench import overload as ov  # noqa: E402

MODEL = "gemma-3-270m"
NODE_TYPES = ("cpu-quality", "cpu-throughput")


def start_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = {nt: cluster.add_node(num_cpus=1, resources={f"gpu_group:{nt}": 1})
             for nt in NODE_TYPES}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster, nodes


def deploy(max_waiting: int, store: str) -> str:
    from orchestrator.build.runner import run_builds
    from orchestrator.build.spec import build_specs
    from orchestrator.config import ServingSpec, load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from orchestrator.serve.app import build_app
    from orchestrator.serve.contract import AppArgs
    from tests.ray.serve_util import deploy as serve_deploy, free_port

    spec = load_cluster_spec(ROOT / "clusters/local.yaml")
    plan = plan_cluster(spec)
    outcomes = run_builds(build_specs(plan, spec), store)
    assert all(o.ok for o in outcomes), outcomes
    app = build_app(AppArgs(plan=plan, model_name=MODEL,
                            artifacts={o.node_type: o.path for o in outcomes},
                            serving=ServingSpec(max_waiting=max_waiting, max_context=2048)))
    return serve_deploy(app, free_port())


def status(base: str) -> dict:
    from tests.ray.serve_util import get

    return get(f"{base}/status")[1]


def complete(base: str, model: str = MODEL, max_tokens: int = 4, prompt: str = "Hello"):
    from tests.ray.serve_util import post

    t0 = time.monotonic()
    code, body, headers = post(f"{base}/v1/completions", {
        "model": model, "prompt": prompt, "max_tokens": max_tokens}, timeout=300)
    return code, body, headers, time.monotonic() - t0


def processes(base: str) -> dict[int, str]:
    st = status(base)
    pids = {st["ingress"]["pid"]: "ingress"}
    for dep, p in st["pools"].items():
        pids.update({r["pid"]: dep for r in p["replicas"]})
    pids.update({pid: "proxy" for pid in ov.ray_processes(("ray::ProxyActor",))})
    return pids


def disconnect_phase(base: str, clients: int) -> dict:
    from tests.ray.serve_util import idle

    body = {"model": MODEL, "prompt": "Tell me a long story about a lighthouse keeper. " * 12,
            "max_tokens": 64}
    t0 = time.monotonic()
    asyncio.run(ov.disconnect_storm(base, body, clients))
    left = time.monotonic()
    while not idle(base):
        if time.monotonic() - left > 120:
            raise TimeoutError("still busy 120 s after the clients left")
        time.sleep(0.2)
    freed = time.monotonic() - left
    after = {p: round(complete(base, f"{MODEL}:{p}")[3], 2) for p in ("f16", "q4_k_m")}
    return {"clients": clients, "sent_s": round(left - t0, 2), "idle_after_s": round(freed, 2),
            "next_answer_s": after}


def replica_phase(base: str) -> dict:
    st = status(base)
    victim = next(r["pid"] for p in st["pools"].values() if p["precision"] == "q4_k_m"
                  for r in p["replicas"])
    with cf.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(complete, base, MODEL, 32, f"Question {i}: why is the sky")
                   for i in range(10)]
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        results = [f.result() for f in futures]
    codes = [r[0] for r in results]
    return {"in_flight": 10, "answered_200": codes.count(200), "codes": codes,
            "served_by": sorted({r[2].get("x-orchestrator-precision", "-") for r in results})}


def node_phase(base: str, cluster, node) -> dict:
    cluster.remove_node(node)
    deadline = time.monotonic() + 120
    while status(base)["pools"]["pool-cpu-throughput"]["replicas"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the Q4_K_M replica is still listed 120 s after its node left")
        time.sleep(0.5)
    unpinned = [complete(base) for _ in range(5)]
    pinned = complete(base, f"{MODEL}:q4_k_m")
    return {"unpinned_codes": [r[0] for r in unpinned],
            "unpinned_precision": sorted({r[2].get("x-orchestrator-precision", "-")
                                          for r in unpinned}),
            "pinned_q4": [pinned[0], (pinned[1].get("error") or {}).get("code")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--saturate-s", type=float, default=15.0)
    ap.add_argument("--overload-s", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--max-waiting", type=int, default=8)
    ap.add_argument("--store", help="artifact store (default: a temporary one)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    log = lambda what: print(f"[{time.strftime('%X')}] {what}", file=sys.stderr)  # noqa: E731
    cluster, nodes = start_cluster()
    out: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = deploy(args.max_waiting, args.store or tmp)
            body = {"model": f"{MODEL}:f16", "prompt": "The history of lighthouses. " * 60,
                    "max_tokens": 4}
            out["overload"] = asyncio.run(ov.overload_run(
                base, body, factor=args.factor, workers=4, saturate_s=args.saturate_s,
                overload_s=args.overload_s, pids=processes(base), on_phase=log))
            log("disconnect storm")
            out["disconnect"] = disconnect_phase(base, args.clients)
            log("replica SIGKILL")
            out["replica"] = replica_phase(base)
            log("node removal")
            out["node"] = node_phase(base, cluster, nodes["cpu-throughput"])
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    o = out["overload"]
    print(f"overload: capacity {o['capacity_per_s']} req/s (F16 pool, ~400-token prompts, "
          f"4 out), offered {args.factor:g}x; recovery {o['recovery_s']} s")
    print("| phase | offered req/s | s | sent | by status | median latency s | served req/s |")
    print("|---|---|---|---|---|---|---|")
    for p in o["phases"]:
        print(f"| {p['phase']} | {p['offered_per_s']} | {p['duration_s']} | {p['sent']} | "
              f"{p['by_status']} | {p['median_latency_s']} | {p['served_per_s']} |")
    print("| process | RSS MB before | peak | after |\n|---|---|---|---|")
    for m in o["memory"]:
        print(f"| {m['process']} | {m['rss_mb_before']} | {m['rss_mb_peak']} | "
              f"{m['rss_mb_after']} |")
    for k in ("disconnect", "replica", "node"):
        print(f"{k}: {json.dumps(out[k])}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
