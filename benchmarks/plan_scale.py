"""Time planning a cluster of many node types (issue: 1,000 node types).

Usage: .venv/bin/python benchmarks/plan_scale.py [--node-types 1000] [--repeat 5]
Prints the median wall time of plan_cluster over --repeat runs, and per node type.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from orchestrator.config import ClusterSpec
from orchestrator.hardware.catalog import GPU_CATALOG
from orchestrator.planner.select import plan_cluster


def make_spec(n: int, seed: int = 0) -> ClusterSpec:
    rng = random.Random(seed)
    gpus = sorted(GPU_CATALOG)
    node_types = []
    for i in range(n):
        gpu = rng.choice(gpus)
        node_types.append({
            "name": f"nt-{i}", "gpu": gpu, "gpus_per_node": rng.choice([1, 2, 4, 8]),
            "interconnect": "nvlink" if GPU_CATALOG[gpu].nvlink else "pcie",
            "count": rng.randint(1, 8)})
    return ClusterSpec.model_validate({"name": "big", "node_types": node_types})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--node-types", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default="llama-3.1-70b")
    args = ap.parse_args()
    spec = make_spec(args.node_types)
    times, plan = [], None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        plan = plan_cluster(spec, model=args.model)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    fits = sum(1 for n in plan.node_types if n.choice)
    print(f"{args.node_types} node types, model {args.model}: median {med:.3f} s over "
          f"{args.repeat} runs (min {min(times):.3f}, max {max(times):.3f}); "
          f"{med / args.node_types * 1e3:.2f} ms per node type; {fits} node types fit")


if __name__ == "__main__":
    main()
