"""Routing policies compared live: the demo's two pools of unequal speed (clusters/
local.yaml: Gemma 3 270M at F16 and at Q4_K_M, one core each) on two emulated CPU node
types, `serving.policy_header` on, and `orchestrator bench --trace` replaying a piece of
the Mooncake conversation trace (block hashes, so requests share prefixes) once per policy
side by side.

The equivalent by hand, against a deployment whose spec sets `serving.policy_header: true`
and `serving.block_tokens: 16` (512 x the token scale):

  orchestrator bench --url http://127.0.0.1:8000 --trace TRACE --requests 40 \\
      --token-scale 0.03125 --rate-scale 0.05 --max-prompt-tokens 512 \\
      --max-output-tokens 32 --policies slo_aware,power_of_two

Before the replay it measures what asking a replica for the token ids adds to a request
on the idle endpoint; after it, the same during the replay.

Usage: .venv/bin/python benchmarks/live_trace.py [--backend llamaserver|llamacpp]
           [--trace FILE] [--requests 40] [--rate-scale 0.05] [--token-scale 0.03125]
           [--policies slo_aware,power_of_two] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "mooncake-conversation-trace.jsonl"
MODEL = "gemma-3-270m"
NODE_TYPES = ("cpu-quality", "cpu-throughput")


def deploy(backend: str | None, block_tokens: int, store: str) -> str:
    from orchestrator.build.runner import run_builds
    from orchestrator.build.spec import build_specs
    from orchestrator.config import ServingSpec, load_cluster_spec
    from orchestrator.planner.select import plan_cluster
    from orchestrator.serve.app import build_app
    from orchestrator.serve.contract import AppArgs
    from tests.ray.serve_util import deploy as serve_deploy, free_port

    spec = load_cluster_spec(ROOT / "clusters/local.yaml")
    if backend:
        spec = spec.model_copy(update={"node_types": [
            nt.model_copy(update={"backends": [backend]}) for nt in spec.node_types]})
    plan = plan_cluster(spec)
    outcomes = run_builds(build_specs(plan, spec), store)
    assert all(o.ok for o in outcomes), outcomes
    serving = ServingSpec(policy_header=True, block_tokens=block_tokens, api_keys_env=None)
    app = build_app(AppArgs(plan=plan, model_name=MODEL, serving=serving,
                            artifacts={o.node_type: o.path for o in outcomes}))
    return serve_deploy(app, free_port(), timeout_s=600)


def tokenize_totals(base: str) -> tuple[int, float]:
    """(prompts counted, seconds in all) from the ingress's orchestrator_tokenize_seconds."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        lines = r.read().decode().splitlines()
    val = {ln.split()[0]: float(ln.split()[1]) for ln in lines
           if ln.startswith("orchestrator_tokenize_seconds_")}
    return (int(val.get("orchestrator_tokenize_seconds_count", 0)),
            val.get("orchestrator_tokenize_seconds_sum", 0.0))


def idle_tokenize_ms(base: str, n: int = 20) -> dict:
    """What asking a replica for the token ids adds to a request on an idle endpoint:
    ``n`` sequential 1-token completions of a ~300-token prompt."""
    from tests.ray.serve_util import post

    c0, s0 = tokenize_totals(base)
    for i in range(n):
        code, body, _ = post(f"{base}/v1/completions", {
            "model": MODEL, "max_tokens": 1, "prompt": f"{i} " + "The quick brown fox. " * 60})
        assert code == 200, body
    c1, s1 = tokenize_totals(base)
    return {"requests": c1 - c0, "mean_ms": round((s1 - s0) / max(c1 - c0, 1) * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["llamaserver", "llamacpp"],
                    help="every pool on this backend (default: the demo spec's)")
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--rate-scale", type=float, default=0.05)
    ap.add_argument("--token-scale", type=float, default=1 / 32)
    ap.add_argument("--max-prompt-tokens", type=int, default=512)
    ap.add_argument("--max-output-tokens", type=int, default=32)
    ap.add_argument("--policies", default="slo_aware,power_of_two")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from orchestrator.bench.run import BenchOptions, bench
    from orchestrator.views import trace_bench_view
    from rich.console import Console

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    for nt in NODE_TYPES:
        cluster.add_node(num_cpus=1, resources={f"gpu_group:{nt}": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as store:
            t0 = time.monotonic()
            base = deploy(args.backend, max(1, round(512 * args.token_scale)), store)
            print(f"deployed in {time.monotonic() - t0:.0f} s at {base}")
            idle = idle_tokenize_ms(base)
            c0, s0 = tokenize_totals(base)
            result = bench(BenchOptions(
                url=base, trace_path=args.trace, limit=args.requests,
                rate_scale=args.rate_scale, token_scale=args.token_scale,
                max_prompt_tokens=args.max_prompt_tokens,
                max_output_tokens=args.max_output_tokens, timeout_s=900,
                policies=tuple(args.policies.split(","))))
            c1, s1 = tokenize_totals(base)
            loaded = {"requests": c1 - c0,
                      "mean_ms": round((s1 - s0) / max(c1 - c0, 1) * 1000, 2)}
            Console(width=140).print(trace_bench_view(result))
            print(f"ingress tokenize call: idle {idle}, during the replay {loaded}")
            out = {**result.model_dump(), "backend": args.backend or "demo",
                   "tokenize_idle": idle, "tokenize_under_load": loaded}
            if args.json_out:
                Path(args.json_out).write_text(json.dumps(out, indent=2))
            serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
