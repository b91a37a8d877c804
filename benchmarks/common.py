"""What the serving benchmarks share: the seed method against an HTTP endpoint, a result
row, and the markdown table they print."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from orchestrator.bench import client as bc
from orchestrator.bench import report


async def http_runs(url, model, runs, conc, salt):
    """Seed method (512-token prompt with a varied start, 256 out) at concurrency `conc`."""
    cl = bc.Client(url, model, None, chat=False, timeout_s=900)
    try:
        await cl.resolve_model()
        rounds, measured = await bc.seed_method(cl, 512, 256, runs, conc, salt0=salt)
    finally:
        await cl.close()
    return report.seed_result(url, cl.model, rounds, measured, conc)


def row(name, conc, r, **extra) -> dict:
    return {"system": name, "concurrency": conc, "errors": r.errors, **extra,
            "prompt_tokens": r.prompt_tokens,
            "ttft_p50_s": r.ttft_s.get("p50"), "ttft_p99_s": r.ttft_s.get("p99"),
            "decode_tok_s": r.decode_tok_s_median, "e2e_tok_s": r.e2e_tok_s_median,
            "aggregate_tok_s": r.aggregate_tok_s_median}


def print_table(rows: list[dict], extra: dict[str, str] | None = None) -> None:
    """`extra`: row key -> column title, printed after the errors column (seconds, 0 dp)."""
    extra = extra or {}
    heads = ["system", "C", "errors", *extra.values(), "TTFT p50 s", "TTFT p99 s",
             "decode tok/s", "e2e tok/s", "aggregate tok/s"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))

    def f(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    for x in rows:
        cells = [x["system"], str(x["concurrency"]), str(x["errors"]),
                 *(f(x.get(k), 0) for k in extra), f(x["ttft_p50_s"]), f(x["ttft_p99_s"]),
                 f(x["decode_tok_s"], 1), f(x["e2e_tok_s"], 1), f(x["aggregate_tok_s"], 1)]
        print("| " + " | ".join(cells) + " |")


def wait_for_models(url: str, timeout_s: float = 120, period_s: float = 0.5) -> None:
    """Until an OpenAI server's /v1/models lists a model (it is up and has loaded one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if json.loads(r.read()).get("data"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(period_s)
    raise TimeoutError(url)


def seed_args(doc: str, runs: int):
    """The command line the seed-method benchmarks share: --runs, --concurrency, --json."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--json", dest="json_out")
    return ap.parse_args()
