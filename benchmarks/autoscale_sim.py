"""Autoscaling against fixed replicas, in the simulator, on the real trace.

clusters/mixed-autoscale.yaml (two 4x A100 nodes, six 2x3090 boxes, Llama 3.1 70B):
the whole inventory deployed all the time, against the autoscaling policy starting every
pool at one replica (new replicas serve after --cold-start seconds). For each arrival-rate
scale of the trace it reports SLO attainment, replica-seconds and cost (replica-hours x
the node type's cost_per_hour), and each setup's goodput (highest rate scale at which 90 %
of requests meet TTFT 2 s and TPOT 100 ms). Engines are the planner's timing models.

  .venv/bin/python benchmarks/autoscale_sim.py [--requests N] [--scales 0.5 1 2 4]
                                               [--prefill-backlog-s S]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.sim.run import Autoscale, Scenario
from orchestrator.sim.trace import load_trace, mean_rate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "azure-llm-inference-2023-conv.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--requests", type=int, help="first N requests (default: all)")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.5, 1, 2, 4])
    ap.add_argument("--cold-start", type=float, default=60.0)
    ap.add_argument("--prefill-backlog-s", type=float,
                    help="override the spec's autoscaling.prefill_backlog_s")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    spec = load_cluster_spec(ROOT / "clusters/mixed-autoscale.yaml")
    if args.prefill_backlog_s is not None:
        spec = spec.model_copy(update={"autoscaling": spec.autoscaling.model_copy(
            update={"prefill_backlog_s": args.prefill_backlog_s})})
    plan = plan_cluster(spec)
    trace = load_trace(args.trace, args.requests)
    cost = {n.node_type: spec.node_type(n.node_type).cost_per_hour / n.choice.replicas_per_node
            for n in plan.pools()}
    print(f"trace: {len(trace)} requests, {mean_rate(trace):.2f} req/s at scale 1; pools: "
          + ", ".join(f"{n.node_type} x{n.replicas}" for n in plan.pools()))
    fixed = Scenario(plan, trace)
    auto = Scenario(plan, trace, autoscale=Autoscale.from_spec(plan, spec,
                                                                cold_start_s=args.cold_start))
    rows = []
    for scale in args.scales:
        for name, sc in (("fixed (whole inventory)", fixed), ("autoscaled", auto)):
            t0 = time.perf_counter()
            s = sc.run("slo_aware", scale)
            by_pool = (sc.last_scaling.by_pool if sc is auto else
                       {n.node_type: n.replicas * s.duration_s for n in plan.pools()})
            rows.append({"setup": name, "scale": scale, "rate_req_s": s.rate_req_s,
                         "attainment": s.slo_attainment, "rejected": s.rejected,
                         "replica_seconds": s.replica_seconds, "by_pool": by_pool,
                         "cost": sum(v / 3600 * cost[k] for k, v in by_pool.items()),
                         "scaling_events": len(sc.last_scaling.events) if sc is auto else 0,
                         "wall_s": time.perf_counter() - t0})
    good = {name: sc.goodput("slo_aware", steps=7).goodput_req_s
            for name, sc in (("fixed (whole inventory)", fixed), ("autoscaled", auto))}
    print("| setup | rate scale | req/s | SLO attainment | rejected | replica-hours "
          "(A100 / 3090) | cost $ | scaling events |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = " / ".join(f"{v / 3600:.1f}" for v in r["by_pool"].values())
        print(f"| {r['setup']} | {r['scale']:g} | {r['rate_req_s']:.2f} | "
              f"{r['attainment']:.1%} | {r['rejected']} | {r['replica_seconds'] / 3600:.1f} "
              f"({per}) | {r['cost']:.2f} | {r['scaling_events']} |")
    for name, g in good.items():
        print(f"goodput ({name}): {g:.2f} req/s")
    print(f"cost per replica-hour by pool: {json.dumps(cost)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "goodput": good}, indent=2))


if __name__ == "__main__":
    main()
