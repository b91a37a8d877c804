"""The benchmark client against a real OpenAI-compatible server (llama.cpp, demo model)."""

import asyncio
import json

from click.testing import CliRunner

from orchestrator.bench import client as bc
from orchestrator.bench import report
from orchestrator.cli import main
from orchestrator.sim.trace import TraceRequest


def test_seed_method_measures_real_streams(llama_server):
    cl = bc.Client(llama_server, None, None, chat=False, timeout_s=120)

    async def go():
        await cl.resolve_model()
        return await bc.seed_method(cl, prompt_tokens=48, max_tokens=8, runs=2, concurrency=1)

    rounds, measured = asyncio.run(go())
    r = report.seed_result(llama_server, cl.model, rounds, measured, 1)
    assert r.errors == 0 and r.requests == 2
    assert abs(measured - 48) <= 10  # calibrated with the server's own token count
    assert r.completion_tokens_median <= 8
    assert 0 < r.ttft_s["p50"] < 30 and r.decode_tok_s_median > 0


def test_concurrent_replay_with_slo(llama_server):
    """A trace replayed open loop under the server's own policy (no policy header: any
    OpenAI-compatible server), with its SLO attainment."""
    from orchestrator.bench.trace_bench import DEPLOYMENT, Shape, replay_policies

    cl = bc.Client(llama_server, None, None, chat=False, timeout_s=120)
    trace = [TraceRequest(0.0, 40, 4), TraceRequest(0.1, 20, 4), TraceRequest(0.2, 30, 4)]

    async def go():
        await cl.resolve_model()
        return await replay_policies(cl, trace, [DEPLOYMENT],
                                     Shape(max_prompt=64, max_output=4))

    samples = asyncio.run(go())[DEPLOYMENT]
    r = report.policy_result(DEPLOYMENT, samples, 60.0, 5.0)
    assert r.requests == 3 and r.errors == 0
    assert r.slo_attainment == 1.0


def test_cli_bench_json_and_unreachable(llama_server):
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "--url", llama_server, "--prompt-tokens", "32",
                               "--max-tokens", "4", "--runs", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["mode"] == "seed" and data["errors"] == 0
    res = runner.invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--runs", "1"])
    assert res.exit_code == 1 and "cannot reach http://127.0.0.1:9" in res.output
