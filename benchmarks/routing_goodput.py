"""Goodput of every routing policy on the mixed cluster, side by side, in the simulator,
with no oracle: the router sees prompt tokens and prefix blocks, the client's max_tokens
(4096) and its own prediction of the output length; the simulated replicas run off the
plan's speed by the error named in each column.

Usage: .venv/bin/python benchmarks/routing_goodput.py [--requests 3000] [--json OUT]
                                                      [--plot-dir DIR] [--quick]

Two workloads on clusters/mixed.yaml with Llama 3.1 70B:
- the Azure conversation trace, TTFT 2 s / TPOT 100 ms;
- the Mooncake conversation trace (prompts ~13K tokens, 512-token prefix blocks), TTFT 10 s
  / TPOT 100 ms: no pool prefills its median prompt within 2 s under load.
Columns: speed error 0, then each pool 25 % faster (+) or slower (-) than planned (A100
first), with 10 % noise per phase. Rows: each policy's goodput (highest rate with 90 % of
requests meeting both objectives); each pool alone (best of three policies); on Azure the
best static split; on Mooncake ours with the router's prefix index off (the engines still
cache); and a homogeneous control (three 4x A100 nodes). Simulated engines (timing models),
not measurements.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.router.policies import POLICIES
from orchestrator.sim.error import SpeedError
from orchestrator.sim.report import PolicyResult, plot
from orchestrator.sim.run import Scenario
from orchestrator.sim.trace import load_trace, mean_rate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRACES = {"azure": (DATA / "azure-llm-inference-2023-conv.csv", 2.0, 0.1),
          "mooncake": (DATA / "mooncake-conversation-trace.jsonl", 10.0, 0.1)}
OURS = "slo_aware"
BASELINES = [p for p in POLICIES if p not in (OURS, "static_split")]
PREFIX_AWARE = ("prefix_affinity", "llmd_scorer", "dynamo_kv")
SPLITS = [0.8, 0.85, 0.9, 0.93, 0.95]
STEPS, LO, HI = 8, 0.01, 8.0
NOISE = 0.1


def errors(a: str, b: str) -> dict[str, SpeedError]:
    out = {"0": SpeedError()}
    for sa in (1, -1):
        for sb in (1, -1):
            key = ("+" if sa > 0 else "-") + ("+" if sb > 0 else "-")
            out[key] = SpeedError({a: 0.25 * sa, b: 0.25 * sb}, NOISE)
    return out


def goodput(plan, trace, ttft, tpot, policy, err, **kw):
    return Scenario(plan, trace, ttft, tpot, speed_error=err, **kw).goodput(
        policy, steps=STEPS, lo=LO, hi=HI)


def run_trace(name, trace, ttft, tpot, mixed, homog, errs, quick) -> dict:
    pools = [n.node_type for n in mixed.pools()]
    rows: dict[str, dict[str, float]] = {}
    sweeps: dict[str, list] = {}

    def put(row, col, g):
        rows.setdefault(row, {})[col] = g.goodput_req_s
        if col == "0":
            sweeps[row] = g

    for col, err in errs.items():
        for p in [OURS, *BASELINES]:
            put(p, col, goodput(mixed, trace, ttft, tpot, p, err))
        for pool in pools:
            best = max((goodput(mixed, trace, ttft, tpot, p, err, pools=[pool])
                        for p in (OURS, "capacity_least_load", "least_outstanding")),
                       key=lambda g: g.goodput_req_s)
            put(f"{pool} alone", col, best)
        if name == "mooncake":
            put(f"{OURS}, router prefix index off", col,
                goodput(mixed, trace, ttft, tpot, OURS, err, router_prefix=False))
        elif not quick:
            best = max((goodput(mixed, trace, ttft, tpot, "static_split", err,
                                policy_args={"weights": {pools[0]: w, pools[1]: 1 - w}})
                        for w in SPLITS), key=lambda g: g.goodput_req_s)
            put("best static split", col, best)
        for p in (OURS, "power_of_two"):
            put(f"homogeneous 3x A100: {p}", col, goodput(homog, trace, ttft, tpot, p, err))
        print(f"  {name} error {col}: done", flush=True)
    return {"rows": rows, "sweeps": sweeps}


def table(name, res, errs, ttft, tpot) -> str:
    rows, cols = res["rows"], list(errs)
    ours = rows[OURS]
    lines = [f"\n## {name}: TTFT {ttft:g} s / TPOT {tpot * 1000:g} ms, goodput req/s "
             "(ours / it)\n", "| | " + " | ".join(f"error {c}" for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for row, vals in rows.items():
        cells = []
        for c in cols:
            g = vals[c]
            ratio = ("" if row in (OURS, f"homogeneous 3x A100: {OURS}")
                     else f" ({ours[c] / g:.2f}x)" if g else " (-)")
            if row.startswith("homogeneous 3x A100: power"):
                mine = rows[f"homogeneous 3x A100: {OURS}"][c]
                ratio = f" ({mine / g:.2f}x)" if g else " (-)"
            cells.append(f"{g:.3f}{ratio}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--traces", default="azure,mooncake")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--plot-dir", help="write goodput pictures (error 0) here")
    ap.add_argument("--quick", action="store_true", help="skip the static splits")
    args = ap.parse_args()
    mixed = plan_cluster(load_cluster_spec(ROOT / "clusters/mixed.yaml"))
    pools = [n.node_type for n in mixed.pools()]
    a100 = load_cluster_spec(ROOT / "clusters/a100-4x.yaml")
    homog = plan_cluster(a100.model_copy(update={"node_types": [
        a100.node_types[0].model_copy(update={"count": 3})]}))
    errs = errors(*pools)
    out = {}
    for name in args.traces.split(","):
        path, ttft, tpot = TRACES[name]
        trace = load_trace(path, args.requests)
        print(f"{name}: first {len(trace)} requests, {mean_rate(trace):.2f} req/s at scale 1",
              flush=True)
        res = run_trace(name, trace, ttft, tpot, mixed, homog, errs, args.quick)
        print(table(name, res, errs, ttft, tpot), flush=True)
        out[name] = res["rows"]
        if args.plot_dir:
            Path(args.plot_dir).mkdir(parents=True, exist_ok=True)
            results = [PolicyResult(policy=k, goodput_req_s=g.goodput_req_s,
                                    sweep=[{"rate_req_s": r, "attainment": a, "scale": s}
                                           for r, a, s in g.points])
                       for k, g in res["sweeps"].items() if not k.startswith("homogeneous")]
            plot(results, str(Path(args.plot_dir) / f"goodput-{name}.png"),
                 f"mixed cluster, {name} trace, TTFT {ttft:g} s / TPOT {tpot * 1000:g} ms, "
                 "error 0")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
