"""Goodput of every routing policy on the mixed cluster, side by side, in the simulator.

Usage: .venv/bin/python benchmarks/routing_goodput.py [--requests 3000] [--trace FILE]
                                                      [--json OUT] [--plot-dir DIR]

For each SLO (TTFT 2 s with TPOT 100 ms, and with TPOT 50 ms) it reports, on
clusters/mixed.yaml with Llama 3.1 70B: each policy's goodput (highest rate with 90 % of
requests meeting both SLOs); each pool alone (best policy); the best static split of
traffic between the pools; and a homogeneous control (three 4x A100 nodes). The engines
are the planner's timing models, not measurements.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.router.policies import POLICIES
from orchestrator.sim.run import Scenario
from orchestrator.sim.trace import load_trace, mean_rate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "azure-llm-inference-2023-conv.csv"
BASELINES = [p for p in POLICIES if p not in ("slo_aware", "static_split")]
SPLITS = [0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97]
STEPS = 9


def goodput(plan, trace, ttft, tpot, policy, **kw) -> float:
    return Scenario(plan, trace, ttft, tpot, **kw).goodput(policy, steps=STEPS).goodput_req_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    trace = load_trace(args.trace, args.requests)
    mixed = plan_cluster(load_cluster_spec(ROOT / "clusters/mixed.yaml"))
    pools = [n.node_type for n in mixed.pools()]
    a100 = load_cluster_spec(ROOT / "clusters/a100-4x.yaml")
    homog = plan_cluster(a100.model_copy(update={"node_types": [
        a100.node_types[0].model_copy(update={"count": 3})]}))
    print(f"trace: first {len(trace)} requests, {mean_rate(trace):.2f} req/s at scale 1")

    t0 = time.perf_counter()
    full = load_trace(args.trace)
    s = Scenario(mixed, full).run("slo_aware")
    print(f"one hour of the trace ({len(full)} requests, {s.rate_req_s:.2f} req/s) on mixed, "
          f"slo_aware: {time.perf_counter() - t0:.1f} s wall")

    out = {}
    for ttft, tpot in ((2.0, 0.1), (2.0, 0.05)):
        key = f"TTFT {ttft:g} s / TPOT {tpot * 1000:g} ms"
        row = {"policies": {}, "alone": {}, "static_split": {}, "homogeneous": {}}
        for p in ["slo_aware", *BASELINES]:
            row["policies"][p] = goodput(mixed, trace, ttft, tpot, p)
        for pool in pools:
            row["alone"][pool] = max(goodput(mixed, trace, ttft, tpot, p, pools=[pool])
                                     for p in ("slo_aware", "capacity_least_load",
                                               "least_outstanding"))
        for w in SPLITS:
            weights = {pools[0]: w, pools[1]: 1 - w}
            row["static_split"][f"{w:g}"] = goodput(mixed, trace, ttft, tpot, "static_split",
                                                    policy_args={"weights": weights})
        for p in ["slo_aware", *BASELINES]:
            row["homogeneous"][p] = goodput(homog, trace, ttft, tpot, p)
        out[key] = row
        _print(key, row, pools)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))


def _print(key, row, pools) -> None:
    ours = row["policies"]["slo_aware"]
    best_alone = max(row["alone"].values())
    best_split_w, best_split = max(row["static_split"].items(), key=lambda kv: kv[1])
    print(f"\n## {key}\n")
    print("| policy | goodput req/s | ours / it |")
    print("|---|---|---|")
    for p, g in row["policies"].items():
        print(f"| {p} | {g:.3f} | {ours / g:.2f}x |" if g else f"| {p} | {g:.3f} | - |")
    for pool, g in row["alone"].items():
        print(f"| {pool} alone (best policy) | {g:.3f} | "
              + (f"{ours / g:.2f}x |" if g else "- |"))
    print(f"| best static split ({pools[0]} share {best_split_w}) | {best_split:.3f} | "
          f"{ours / best_split:.2f}x |")
    print(f"\nstatic splits ({pools[0]} share: goodput): "
          + ", ".join(f"{w}: {g:.3f}" for w, g in row["static_split"].items()))
    h = row["homogeneous"]
    print("\nhomogeneous control (3x a100-80g-sxm-x4-nvlink): "
          + ", ".join(f"{p} {g:.3f}" for p, g in h.items())
          + f"; slo_aware / power_of_two = {h['slo_aware'] / h['power_of_two']:.3f}x")
    print(f"\nours vs best single pool: {ours / best_alone:.3f}x" if best_alone else "")


if __name__ == "__main__":
    main()
