"""Overload and soak on an emulated mixed cluster (a 4x A100 node, two 2x3090 nodes and a
CPU head as Ray nodes on this machine; simulated engines: the timing model, since the
point is the serving path's behaviour, not the model's answers).

  overload  saturate the F16 pool (pinned requests with ~10K-token prompts, prefill-bound)
            to measure what it completes per second, offer --factor times that open loop
            for --overload-s, then measure recovery
  soak      offer --soak-fraction of the whole cluster's capacity (unpinned, mixed sizes)
            for --soak-s and watch every process's memory

Prints a table and, with --json, writes everything. Usage:

  .venv/bin/python benchmarks/overload.py [--factor 10] [--overload-s 60] [--soak-s 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from orchestrator.bench import overload as ov  # noqa: E402

A100, R3090 = "a100-80g-sxm-x4-nvlink", "rtx-3090-x2-nvlink"
MODEL = "llama-3.1-70b"


def start_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=4, resources={f"gpu_group:{A100}": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=2, resources={f"gpu_group:{R3090}": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster


def deploy(max_waiting: int) -> str:
    from orchestrator.config import ServingSpec, load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from orchestrator.serve.app import build_app
    from orchestrator.serve.contract import AppArgs
    from tests.ray.serve_util import deploy as serve_deploy, free_port

    plan = plan_cluster(load_cluster_spec(ROOT / "clusters/mixed.yaml"))
    return serve_deploy(build_app(AppArgs(plan=plan, model_name=MODEL, engine="simulated",
                                          serving=ServingSpec(max_waiting=max_waiting))),
                        free_port())


def processes(base: str) -> dict[int, str]:
    from tests.ray.serve_util import get

    st = get(f"{base}/status")[1]
    pids = {st["ingress"]["pid"]: "ingress"}
    for dep, p in st["pools"].items():
        pids.update({r["pid"]: dep for r in p["replicas"]})
    pids.update({pid: "proxy" for pid in ov.ray_processes(("ray::ProxyActor",))})
    pids.update({pid: "controller" for pid in ov.ray_processes(("ray::ServeController",))})
    return pids


async def soak(base: str, rate: float, duration_s: float, pids) -> dict:
    import random

    watch = ov.MemoryWatch(pids, period_s=2.0)
    watch.start()
    rng = random.Random(0)
    bodies = [{"model": MODEL, "prompt": "w " * rng.randint(50, 4000),
               "max_tokens": rng.randint(4, 64)} for _ in range(64)]
    phases = []
    t_end = time.monotonic() + duration_s
    while time.monotonic() < t_end:
        chunk = min(30.0, t_end - time.monotonic())
        phases.append(await ov.open_loop(base, rng.choice(bodies), rate, chunk,
                                         name="soak"))
    await watch.stop()
    merged = ov.Phase("soak", rate, duration_s, [o for p in phases for o in p.outcomes])
    return {"summary": merged.summary(), "memory": watch.summary()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--saturate-s", type=float, default=15.0)
    ap.add_argument("--overload-s", type=float, default=60.0)
    ap.add_argument("--soak-s", type=float, default=300.0)
    ap.add_argument("--soak-rate", type=float, default=4.0,
                    help="requests/s for the soak (unpinned, mixed sizes)")
    ap.add_argument("--max-waiting", type=int, default=4)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    cluster = start_cluster()
    try:
        base = deploy(args.max_waiting)
        pids = processes(base)
        body = {"model": f"{MODEL}:f16", "prompt": "z" * 40000, "max_tokens": 2}
        over = asyncio.run(ov.overload_run(
            base, body, factor=args.factor, workers=4, saturate_s=args.saturate_s,
            overload_s=args.overload_s, pids=pids,
            on_phase=lambda p: print(f"[{time.strftime('%X')}] {p}", file=sys.stderr)))
        print(f"[{time.strftime('%X')}] soak at {args.soak_rate} req/s", file=sys.stderr)
        soaked = asyncio.run(soak(base, args.soak_rate, args.soak_s, pids))
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    print(f"overload: capacity {over['capacity_per_s']} req/s (F16 pool, ~10K-token "
          f"prompts), offered {args.factor:g}x; recovery {over['recovery_s']} s")
    print("| phase | offered req/s | s | sent | by status | median latency s | served req/s |")
    print("|---|---|---|---|---|---|---|")
    for p in over["phases"] + [soaked["summary"]]:
        print(f"| {p['phase']} | {p['offered_per_s']} | {p['duration_s']} | {p['sent']} | "
              f"{p['by_status']} | {p['median_latency_s']} | {p['served_per_s']} |")
    print("| process | RSS MB before | peak | after (overload) | soak before | soak peak | "
          "soak after |")
    print("|---|---|---|---|---|---|---|")
    soak_mem = {m["pid"]: m for m in soaked["memory"]}
    for m in over["memory"]:
        s = soak_mem.get(m["pid"], {})
        print(f"| {m['process']} | {m['rss_mb_before']} | {m['rss_mb_peak']} | "
              f"{m['rss_mb_after']} | {s.get('rss_mb_before', '-')} | "
              f"{s.get('rss_mb_peak', '-')} | {s.get('rss_mb_after', '-')} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"overload": over, "soak": soaked},
                                                  indent=2))


if __name__ == "__main__":
    main()
