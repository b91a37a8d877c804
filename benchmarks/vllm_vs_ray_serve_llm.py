"""Our endpoint's vLLM pool against Ray Serve LLM, side by side in one run, on the demo model
(Gemma 3 270M BF16, the safetensors our build dequantizes from the shipped GGUF):

  ours              `orchestrator up clusters/local-vllm.yaml`, requests pinned to the vLLM
                    BF16 pool (`gemma-3-270m:bf16`)
  Ray Serve LLM     `ray.serve.llm.build_openai_app` serving the same checkpoint with the
                    same engine settings (eager, bf16, same max_model_len and KV space)

Seed method: 512-token prompt (start varied per request, so no prefix cache skips the
prefill), 256 output tokens, median of --runs runs, at each concurrency. Run it in the
virtualenv that has vLLM's CPU build (`make test-vllm` or `make run-vllm` creates it):

  .venv-vllm/bin/python benchmarks/vllm_vs_ray_serve_llm.py [--runs 5] [--concurrency 1 4]

Each system starts, is measured and stops before the next starts, so they never share the
two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import http_runs, print_table, row, wait_for_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = ROOT / "clusters/local-vllm.yaml"
OURS_PORT, PEER_PORT = 8018, 8019


def vllm_artifact() -> dict:
    """Build (or find in the store) the vLLM pool's artifact; its vllm.json holds the engine
    settings both systems then use."""
    out = subprocess.run([BIN / "orchestrator", "build", str(SPEC), "--only", "cpu-vllm",
                          "--json"], check=True, capture_output=True, text=True)
    path = Path(json.loads(out.stdout)["outcomes"][0]["path"])
    rec = json.loads((path / "vllm.json").read_text())
    return {**rec, "model": str(path / rec["model"])}


def ours(args, rows):
    subprocess.run([BIN / "orchestrator", "down"], capture_output=True)
    t0 = time.monotonic()
    subprocess.run([BIN / "orchestrator", "up", str(SPEC), "--port", str(OURS_PORT)],
                   check=True, capture_output=True)
    start_s = time.monotonic() - t0
    try:
        for conc in args.concurrency:
            r = asyncio.run(http_runs(f"http://127.0.0.1:{OURS_PORT}", "gemma-3-270m:bf16",
                                      args.runs, conc, 1000 + conc))
            rows.append(row("ours, vLLM BF16 pool", conc, r, start_s=start_s))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run([BIN / "orchestrator", "down"], capture_output=True)


def ray_serve_llm(args, rows, rec):
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    t0 = time.monotonic()
    # Ray Serve LLM reserves 2 logical CPUs for the engine's bundle and 1 for its ingress:
    # declare enough logical CPUs for both (the two physical cores are what they are).
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False,
             log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PEER_PORT})
        cfg = LLMConfig(
            model_loading_config={"model_id": "gemma", "model_source": rec["model"]},
            deployment_config={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
            accelerator_config={"kind": "cpu"},
            engine_kwargs={"max_model_len": rec["max_model_len"], "dtype": rec["dtype"],
                           "enforce_eager": rec.get("enforce_eager", False)},
            runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE":
                                      str(rec.get("cpu_kv_space_gib") or 2)}})
        serve.run(build_openai_app({"llm_configs": [cfg]}), blocking=False)
        wait_for_models(f"http://127.0.0.1:{PEER_PORT}/v1/models", timeout_s=900,
                        period_s=2)
        start_s = time.monotonic() - t0
        for conc in args.concurrency:
            r = asyncio.run(http_runs(f"http://127.0.0.1:{PEER_PORT}", "gemma", args.runs,
                                      conc, 2000 + conc))
            rows.append(row("Ray Serve LLM", conc, r, start_s=start_s))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--only", choices=["ours", "ray-serve-llm"],
                    help="measure one system (default: both, one after the other)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    rec = vllm_artifact()
    rows: list[dict] = []
    if args.only in (None, "ours"):
        ours(args, rows)
    if args.only in (None, "ray-serve-llm"):
        ray_serve_llm(args, rows, rec)
    print(f"engine settings (both): {json.dumps({k: rec[k] for k in sorted(rec)})}")
    print_table(rows, {"start_s": "start s"})
    by = {(x["system"], x["concurrency"]): x for x in rows}
    for conc in args.concurrency:
        a, b = by.get(("ours, vLLM BF16 pool", conc)), by.get(("Ray Serve LLM", conc))
        if a and b and b["aggregate_tok_s"]:
            print(f"C={conc}: ours / Ray Serve LLM throughput = "
                  f"{a['aggregate_tok_s'] / b['aggregate_tok_s']:.3f}; TTFT p50 "
                  f"{a['ttft_p50_s']:.2f} s vs {b['ttft_p50_s']:.2f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    print("medians over", args.runs, "runs; machine:", os.cpu_count(), "cores", file=sys.stderr)


if __name__ == "__main__":
    main()
