"""`simulate`: replay a trace over the planned cluster with the routing policies."""

from __future__ import annotations

import click

from orchestrator.cli.common import cluster_argument, console, echo_json, main, user_errors
from orchestrator.defaults import SLO_TPOT_S, SLO_TTFT_S


def _policy_names() -> list[str]:
    from orchestrator.router.policies import POLICIES

    return list(POLICIES)


@main.command()
@cluster_argument
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="A request trace: CSV with TIMESTAMP, ContextTokens, GeneratedTokens (the "
                   "Azure traces) or JSON lines with timestamp (ms), input_length, "
                   "output_length, hash_ids (the Mooncake traces, with prefix blocks).")
@click.option("--synthetic", type=click.Choice(["poisson", "bursty"]),
              help="Generate arrivals instead of a trace (with --rate and --requests).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Requests/s of the synthetic workload.")
@click.option("--requests", "limit", type=click.IntRange(min=1),
              help="Use the first N requests of the trace (synthetic default 2000).")
@click.option("--policy", "policies", multiple=True,
              help="Routing policy (repeat for several; default: all but static_split): "
                   + ", ".join(_policy_names()) + ".")
@click.option("--rate-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Multiply the arrival rate.")
@click.option("--sweep", is_flag=True,
              help="Search each policy's goodput: the highest rate at which 90%% of requests "
                   "meet both SLOs.")
@click.option("--slo-ttft", type=click.FloatRange(min=0, min_open=True), default=SLO_TTFT_S,
              show_default=True, help="Time-to-first-token objective, seconds.")
@click.option("--slo-tpot", type=click.FloatRange(min=0, min_open=True), default=SLO_TPOT_S,
              show_default=True, help="Time-per-output-token objective, seconds.")
@click.option("--only", "pools", multiple=True, help="Simulate only these node types.")
@click.option("--pin-share", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests pinned to --pin-precision.")
@click.option("--pin-precision", help="Precision the pinned share asks for, e.g. f16.")
@click.option("--model", help="Model id (default: the spec's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write SLO attainment against load, one line per policy (PNG).")
@click.option("--autoscale", is_flag=True,
              help="Run the autoscaling policy on simulated time: pools with an autoscaling "
                   "section start at their initial replicas and grow or shrink "
                   "(docs/autoscaling.md); replica-seconds say what it used.")
@click.option("--cold-start", "cold_start_s", type=click.FloatRange(min=0), default=60.0,
              show_default=True, help="With --autoscale: seconds before a new replica serves.")
@click.option("--max-tokens", "max_tokens", type=click.IntRange(min=1),
              help="max_tokens every simulated client sends (traces carry none); outputs "
                   "longer than it end there. Default: 4096. The router sees only this cap "
                   "and its own prediction of the output length, never the true length.")
@click.option("--speed-error", metavar="E|TYPE=E,...",
              help="The simulated replicas' true speed off the plan's estimate: 0.25 makes "
                   "each node type 25%% faster or slower (sign drawn from --seed); "
                   "a100-4x=-0.25,rtx3090-2x=0.25 sets each. Adds --step-noise.")
@click.option("--step-noise", type=click.FloatRange(min=0, max=1),
              help="Log-normal noise on each simulated phase's duration (sd of its log); "
                   "default 0.1 with --speed-error, else 0.")
@click.option("--trace-decisions", "decisions_path", type=click.Path(dir_okay=False),
              help="Write every routing decision (each candidate's estimates, the choice, "
                   "then the request's true TTFT/TPOT) as JSON lines; a single rate only.")
@user_errors
def simulate(cluster_path, trace_path, synthetic, rate, limit, policies, rate_scale, sweep,
             slo_ttft, slo_tpot, pools, pin_share, pin_precision, model, seed, as_json,
             plot_path, autoscale, cold_start_s, max_tokens, speed_error, step_noise,
             decisions_path):
    """Replay a trace (or a synthetic load) over the planned cluster with simulated engines.

    The replicas are timing models from the planner's performance model (prefill, decode,
    batching up to the KV capacity, chunked prefill or not); the routing policies are the
    ones the live router runs, seeing only what the live ingress sees (prompt tokens and
    prefix blocks, the client's max_tokens, a predicted output length). --speed-error
    makes the replicas disagree with the plan the router estimates from.
    """
    from rich.progress import Progress

    from orchestrator.sim import report
    from orchestrator.sim.setup import SimOptions, prepare

    p = prepare(cluster_path, SimOptions(
        trace_path=trace_path, synthetic=synthetic, rate=rate, limit=limit,
        policies=tuple(policies), slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot, pools=tuple(pools),
        pin_share=pin_share, pin_precision=pin_precision, model=model, seed=seed,
        autoscale=autoscale, cold_start_s=cold_start_s, max_tokens=max_tokens,
        speed_error=speed_error, step_noise=step_noise))
    plan, scenario, names, n_requests = p.plan, p.scenario, p.policies, len(p.scenario.trace)
    if decisions_path and sweep:
        raise click.UsageError("--trace-decisions records one run per policy; drop --sweep")
    from orchestrator.cli.progress import bars_wanted, stderr_console

    with Progress(transient=True, disable=not bars_wanted(),
                  console=stderr_console()) as progress:
        task = progress.add_task("simulating", total=len(names))
        results = report.simulate_policies(
            scenario, names, sweep=sweep, rate_scale=rate_scale, decisions_path=decisions_path,
            tick=lambda name: progress.update(task, advance=1, description=name))
    if plot_path:
        report.plot(results, plot_path, f"{plan.cluster}: {plan.model_display}, TTFT "
                    f"{slo_ttft:g} s, TPOT {slo_tpot * 1000:g} ms")
    if as_json:
        echo_json({"cluster": plan.cluster, "model": plan.model, "requests": n_requests,
                    "slo_ttft_s": slo_ttft, "slo_tpot_s": slo_tpot,
                    "max_tokens": scenario.max_tokens,
                    "speed_error": scenario.speed_error.describe(),
                    "results": [r.model_dump() for r in results]})
    else:
        from orchestrator.views import simulation_view

        console().print(simulation_view(plan, results, n_requests, slo_ttft, slo_tpot))
