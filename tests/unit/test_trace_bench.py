"""`bench --trace` without an endpoint: prompt synthesis from block hashes, scaling, the
per-policy report, the CLI's validation."""

from click.testing import CliRunner

from orchestrator.bench.client import Sample
from orchestrator.bench.report import policy_result
from orchestrator.bench.trace_bench import Shape, headers, synthesize
from orchestrator.cli import main
from orchestrator.sim.trace import TraceRequest

SHAPE = Shape(token_scale=1 / 16, max_prompt=400, max_output=64, words_per_token=0.75)


def test_shared_block_hashes_share_a_text_prefix_and_nothing_more():
    a = synthesize(TraceRequest(0, 2048, 100, block_hashes=(1, 2, 3, 4)), 0, "p", SHAPE)
    b = synthesize(TraceRequest(0, 2048, 100, block_hashes=(1, 2, 9, 10)), 1, "p", SHAPE)
    block = SHAPE.block_words  # 512 tokens / 16 * 0.75 words per token
    assert block == 24
    wa, wb, shared = a.split(), b.split(), 1 + 2 * block  # the salt, two blocks
    assert wa[:shared] == wb[:shared] and wa[shared:] != wb[shared:]
    assert len(wa) == 1 + round(2048 / 16 * 0.75)  # the salt, then the scaled prompt


def test_the_same_request_differs_per_policy_from_its_first_word():
    r = TraceRequest(0, 1024, 10, block_hashes=(5, 6))
    a, b = synthesize(r, 0, "slo_aware", SHAPE), synthesize(r, 0, "power_of_two", SHAPE)
    assert a.split()[0] == "slo_aware:" and a.split()[1:] == b.split()[1:]


def test_a_prompt_without_hashes_is_unique_and_a_cut_block_is_a_prefix_of_it():
    x = synthesize(TraceRequest(0, 512, 10), 0, "p", SHAPE)
    y = synthesize(TraceRequest(0, 512, 10), 1, "p", SHAPE)
    assert x != y
    short = synthesize(TraceRequest(0, 200, 10, block_hashes=(7,)), 0, "p", SHAPE)
    full = synthesize(TraceRequest(0, 512, 10, block_hashes=(7,)), 0, "p", SHAPE)
    assert full.startswith(short)


def test_sizes_scale_and_cap():
    assert SHAPE.sizes(TraceRequest(0, 1600, 800)) == (100, 50)
    assert SHAPE.sizes(TraceRequest(0, 100000, 5000)) == (400, 64)
    assert SHAPE.sizes(TraceRequest(0, 1, 1)) == (1, 1)
    assert headers("none") is None and headers("slo_aware") == {
        "x-orchestrator-policy": "slo_aware"}


def test_policy_result_counts_pools_and_misses():
    ok = [Sample(True, 0.0, first=0.5, end=1.5, completion_tokens=11, prompt_tokens=30,
                 pool=pool) for pool in ("pool-a", "pool-a", "pool-b")]
    slow = Sample(True, 0.0, first=5.0, end=6.0, completion_tokens=11, pool="pool-b")
    bad = Sample(False, 0.0, error="APIStatusError: 400")
    r = policy_result("slo_aware", ok + [slow, bad], slo_ttft=2.0, slo_tpot=0.2)
    assert r.requests == 5 and r.errors == 1 and r.slo_attainment == 3 / 5
    assert r.pools == {"pool-a": 2, "pool-b": 2} and r.tpot_p50_s == 0.1
    assert r.ttft_s["p50"] == 0.5 and r.prompt_tokens_median == 30


def test_cli_refuses_an_unknown_policy(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2}\n')
    res = CliRunner().invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--trace",
                                    str(trace), "--policies", "slo_aware,fastest"])
    assert res.exit_code == 1 and "unknown routing policy 'fastest'" in res.output
    assert "power_of_two" in res.output


def test_cli_help_explains_the_trace_replay():
    out = CliRunner().invoke(main, ["bench", "--help"]).output
    for word in ("--token-scale", "--policies", "x-orchestrator-policy", "ignore_eos"):
        assert word in out
