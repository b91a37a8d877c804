"""`orchestrator bench --trace` against the real demo: two llama.cpp pools of unequal speed
(Gemma 3 270M at F16 and at Q4_K_M, one core each, llama-cpp-python) behind the ingress,
with per-request policies on. A tiny Mooncake-style trace with shared block hashes is
replayed once per policy side by side; every request is served under both, each reports
its requests per pool, and the ingress now routes on the engine's own prompt count."""

import json
import re
import urllib.request

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import ServingSpec
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.ray.serve_util import build_demo, deploy, free_port, post

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"CPU": 1, "gpu_group:cpu-quality": 1},
         "cpu-throughput": {"CPU": 1, "gpu_group:cpu-throughput": 1}}
MODEL = "gemma-3-270m"
SCALE = 1 / 16  # the trace's 512-token blocks become 32 tokens: serving.block_tokens
REQUESTS = 15  # per policy: 30 requests in all


@pytest.fixture(scope="module")
def base(ray_cluster, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llamacpp extra not installed")
    from ray import serve

    plan, artifacts = build_demo(tmp_path_factory.mktemp("store"), "llamacpp")
    serving = ServingSpec(policy_header=True, block_tokens=round(512 * SCALE),
                          api_keys_env=None)
    base = deploy(build_app(AppArgs(plan=plan, model_name=MODEL, artifacts=artifacts,
                                    serving=serving)), free_port())
    yield base
    serve.shutdown()


def tiny_trace(path) -> str:
    """Three conversations: each turn's prompt repeats the blocks of the turn before."""
    lines, t = [], 0
    for turn in range(REQUESTS):
        conv = turn % 3
        blocks = [0] + [100 * conv + i for i in range(1, 2 + turn // 3)]
        lines.append(json.dumps({"timestamp": t, "input_length": 512 * len(blocks) - 100,
                                 "output_length": 160, "hash_ids": blocks}))
        t += 400
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def metrics(base: str) -> dict[tuple, float]:
    """(name, sorted label pairs) -> value, from the ingress's /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^(orchestrator_\w+)(?:\{([^}]*)\})? ([-0-9.e+]+)$', text, re.M):
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_bench_trace_compares_policies_on_the_live_pools(base, tmp_path):
    trace = tiny_trace(tmp_path / "trace.jsonl")
    res = CliRunner().invoke(main, [
        "bench", "--url", base, "--trace", trace, "--requests", str(REQUESTS),
        "--token-scale", str(SCALE), "--rate-scale", "1", "--max-output-tokens", "12",
        "--timeout", "120", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert [p["policy"] for p in r["policies"]] == ["slo_aware", "power_of_two"]
    for p in r["policies"]:
        assert p["requests"] == REQUESTS and p["errors"] == 0, p
        assert sum(p["pools"].values()) == REQUESTS
        assert set(p["pools"]) <= {"pool-cpu-quality", "pool-cpu-throughput"}
        assert 0 <= p["slo_attainment"] <= 1 and p["ttft_s"]["p50"] > 0


def test_routing_counts_the_prompt_as_the_engine_does(base):
    for body, path in (({"prompt": "The capital of France is Paris. " * 9}, "completions"),
                       ({"messages": [{"role": "user", "content": "Name a colour. " * 7}]},
                        "chat/completions")):
        before = metrics(base)
        code, answer, headers = post(f"{base}/v1/{path}",
                                     {"model": MODEL, "max_tokens": 2, **body})
        assert code == 200, answer
        after = metrics(base)
        key = ("orchestrator_routed_prompt_tokens_total",
               (("pool", headers["x-orchestrator-pool"]),
                ("precision", headers["x-orchestrator-precision"])))
        routed = after[key] - before.get(key, 0.0)
        assert routed == answer["usage"]["prompt_tokens"] > 20
    m = metrics(base)
    assert not any(k[0] == "orchestrator_tokenize_fallbacks_total" and v
                   for k, v in m.items())
    n = m[("orchestrator_tokenize_seconds_count", ())]
    assert n >= 2 * REQUESTS and m[("orchestrator_tokenize_seconds_sum", ())] / n < 0.1


def test_an_unknown_policy_header_is_a_400_naming_the_valid_ones(base):
    code, body, _ = post(f"{base}/v1/completions", {"model": MODEL, "prompt": "Hi",
                                                    "max_tokens": 1},
                         headers={"x-orchestrator-policy": "fastest"})
    assert code == 400 and "slo_aware" in body["error"]["message"]
