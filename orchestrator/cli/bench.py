"""`bench`: measure a live OpenAI-compatible endpoint."""

from __future__ import annotations

import click

from orchestrator.cli.common import console, echo_json, main, user_errors
from orchestrator.defaults import BENCH_POLICIES, SLO_TPOT_S, SLO_TTFT_S


@main.command()
@click.option("--url", required=True, help="Endpoint base URL, e.g. http://127.0.0.1:8000.")
@click.option("--model", help="Model name to ask for (default: the first the endpoint lists).")
@click.option("--api-key", envvar="ORCHESTRATOR_API_KEY", help="Bearer key, if the endpoint "
              "needs one (or ORCHESTRATOR_API_KEY).")
@click.option("--chat", is_flag=True, help="Use /v1/chat/completions instead of /v1/completions.")
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Runs of the seed method; medians are over these.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True,
              help="Simultaneous requests per run.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="Replay this trace (Azure CSV or Mooncake JSON lines) once per "
                   "--policies, side by side, instead of the seed method.")
@click.option("--policies", default=",".join(BENCH_POLICIES), show_default=True,
              help="Replay: comma-separated routing policies to compare, each sent with "
                   "the header x-orchestrator-policy (the endpoint needs serving."
                   "policy_header: true); 'none' sends no header (the endpoint's own "
                   "policy; any OpenAI-compatible server).")
@click.option("--rate-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Replay: multiply the trace's arrival rate (0.5: "
                                      "twice the trace's time between arrivals).")
@click.option("--token-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Replay: multiply every prompt and output length "
                                      "(and the trace's 512-token prefix blocks) to fit a "
                                      "small model's context; set the endpoint's serving."
                                      "block_tokens to 512 x this.")
@click.option("--requests", "limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Replay: the first N requests of the trace.")
@click.option("--max-prompt-tokens", type=click.IntRange(min=1), default=1024,
              show_default=True, help="Replay: cap each (scaled) prompt.")
@click.option("--max-output-tokens", type=click.IntRange(min=1), default=256,
              show_default=True, help="Replay: cap each (scaled) output.")
@click.option("--slo-ttft", type=click.FloatRange(min=0, min_open=True),
              help=f"The TTFT objective, seconds: the share meeting it and --slo-tpot is "
                   f"reported (replay default {SLO_TTFT_S:g}).")
@click.option("--slo-tpot", type=click.FloatRange(min=0, min_open=True),
              help=f"The TPOT objective, seconds (replay default {SLO_TPOT_S:g}).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=600, show_default=True, help="Per-request timeout, seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def bench(url, model, api_key, chat, prompt_tokens, max_tokens, runs, concurrency, trace_path,
          policies, rate_scale, token_scale, limit, max_prompt_tokens, max_output_tokens,
          slo_ttft, slo_tpot, timeout_s, as_json):
    """Measure a live OpenAI-compatible endpoint.

    By default the seed guide's method (docs/sources.md): a 512-token prompt (calibrated
    with the server's own token count, its start varied so no prefix cache skips the
    prefill), 256 output tokens, median of 5 runs.

    With --trace, the first --requests of the trace, open loop at --rate-scale, lengths
    times --token-scale, once per policy of --policies at the same arrivals (each policy's
    copy of a request sent at once, so the endpoint sees the rate times the policies).
    Requests that share the trace's block hashes share a text prefix (one fixed chunk of
    words per hash), so prefix caches and prefix-aware routing see the trace's reuse;
    each policy's prompts start with its name, so no policy warms another's cache.
    max_tokens is the scaled output length: the API has no ignore_eos, so an answer may
    end early. Per policy: SLO attainment, TTFT p50/p90/p99, TPOT p50, requests per pool.
    """
    from orchestrator.bench.run import BenchOptions, bench as run_bench

    opts = BenchOptions(url=url, model=model, api_key=api_key, chat=chat,
                        prompt_tokens=prompt_tokens, max_tokens=max_tokens, runs=runs,
                        concurrency=concurrency, trace_path=trace_path, rate_scale=rate_scale,
                        limit=limit, max_prompt_tokens=max_prompt_tokens,
                        max_output_tokens=max_output_tokens, slo_ttft_s=slo_ttft,
                        slo_tpot_s=slo_tpot, timeout_s=timeout_s, token_scale=token_scale,
                        policies=tuple(p.strip() for p in policies.split(",") if p.strip()))
    from orchestrator.cli.progress import stderr_console

    # a spinner on stderr, where a terminal shows it; stdout keeps the table or the JSON
    with stderr_console().status("benchmarking...", spinner="dots"):
        result = run_bench(opts)
    if as_json:
        echo_json(result.model_dump())
    else:
        from orchestrator.views import bench_view, trace_bench_view

        console().print(trace_bench_view(result) if result.mode == "trace"
                        else bench_view(result))
