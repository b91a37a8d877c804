"""`bench`: measure a live OpenAI-compatible endpoint."""

from __future__ import annotations

import click

from orchestrator.cli.common import console, echo_json, main, quiet_if, user_errors


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
              help="Replay this trace's arrivals and sizes instead of the seed method.")
@click.option("--rate-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Replay: multiply the trace's arrival rate.")
@click.option("--requests", "limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Replay: the first N requests of the trace.")
@click.option("--max-prompt-tokens", type=click.IntRange(min=1), default=1024,
              show_default=True, help="Replay: cap each prompt (small test models).")
@click.option("--max-output-tokens", type=click.IntRange(min=1), default=256,
              show_default=True, help="Replay: cap each output.")
@click.option("--slo-ttft", type=click.FloatRange(min=0, min_open=True),
              help="Replay: report the share meeting this TTFT (seconds) and --slo-tpot.")
@click.option("--slo-tpot", type=click.FloatRange(min=0, min_open=True))
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=600, show_default=True, help="Per-request timeout, seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def bench(url, model, api_key, chat, prompt_tokens, max_tokens, runs, concurrency, trace_path,
          rate_scale, limit, max_prompt_tokens, max_output_tokens, slo_ttft, slo_tpot,
          timeout_s, as_json):
    """Measure a live OpenAI-compatible endpoint.

    By default the seed guide's method (docs/sources.md): a 512-token prompt (calibrated
    with the server's own token count, its start varied so no prefix cache skips the
    prefill), 256 output tokens, median of 5 runs. With --trace, an open-loop replay of
    the trace at --rate-scale.
    """
    from orchestrator.bench.run import BenchOptions, bench as run_bench

    opts = BenchOptions(url=url, model=model, api_key=api_key, chat=chat,
                        prompt_tokens=prompt_tokens, max_tokens=max_tokens, runs=runs,
                        concurrency=concurrency, trace_path=trace_path, rate_scale=rate_scale,
                        limit=limit, max_prompt_tokens=max_prompt_tokens,
                        max_output_tokens=max_output_tokens, slo_ttft_s=slo_ttft,
                        slo_tpot_s=slo_tpot, timeout_s=timeout_s)
    with quiet_if(as_json, console().status("benchmarking...", spinner="dots")):
        result = run_bench(opts)
    if as_json:
        echo_json(result.model_dump())
    else:
        from orchestrator.views import bench_view

        console().print(bench_view(result))
