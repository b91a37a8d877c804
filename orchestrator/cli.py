"""Command line: parse, call, print. User errors become ClickException here and only here."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console

from orchestrator.errors import NoFeasiblePlanError, OrchestratorError, UserError


def _console() -> Console:
    # Piped output would otherwise wrap the plan table at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200)


def user_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NoFeasiblePlanError as e:
            raise click.ClickException(str(e)) from None
        except UserError as e:
            raise click.ClickException(str(e)) from None
        except OrchestratorError as e:  # a fault with a message made for the operator
            raise click.ClickException(str(e)) from None

    return wrapper


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestrator")
def main():
    """Serve one LLM from one OpenAI-compatible endpoint across unequal GPU machines.

    Typical flow: `discover` each machine, write a cluster spec (see clusters/),
    `plan` it, then deploy.
    """


def _fixture_option(fn):
    return click.option(
        "--fixture", metavar="NAME|PATH",
        help="Replay a recorded NVML device table instead of this machine's GPUs "
             "(e.g. 2x3090-nvlink, 4xa100-sxm, 8xh100-sxm, mixed-pcie, no-driver).")(fn)


def _inventory(fixture: str | None):
    from orchestrator.hardware.discovery import discover

    if fixture:
        from orchestrator.hardware.fake_nvml import FakeNVML

        return discover(FakeNVML.from_name(fixture))
    return discover()


@main.command()
@_fixture_option
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@user_errors
def discover(fixture, as_json):
    """Show this node's GPUs (via NVML) and how they group into GPU groups.

    GPUs joined by NVLink form one group; a model's remaining GPUs form a PCIe group.
    Without an NVIDIA driver the inventory is CPU-only.
    """
    inv = _inventory(fixture)
    if as_json:
        _echo_json(inv.model_dump())
    else:
        from orchestrator.views import inventory_view

        _console().print(inventory_view(inv))


@main.command("node-resources")
@_fixture_option
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False),
              help="Name each GPU group after the matching node type of this cluster spec.")
@click.option("--node-type", help="Advertise this node as this node type (required on a "
                                  "CPU-only node).")
@click.option("--json", "as_json", is_flag=True, help="Print the flags as JSON.")
@user_errors
def node_resources_cmd(fixture, cluster_path, node_type, as_json):
    """Print the `ray start` flags that make this node schedulable by GPU group.

    Each GPU group becomes one unit of the custom resource gpu_group:<type>, because Ray's
    own detection names consumer cards generically (an RTX 3090 is "G").
    """
    from orchestrator.config import load_cluster_spec
    from orchestrator.hardware.resources import node_resources

    spec = load_cluster_spec(cluster_path) if cluster_path else None
    res = node_resources(_inventory(fixture), spec, node_type)
    if as_json:
        _echo_json({**res.model_dump(), "ray_start_args": res.ray_start_args()})
    else:
        from orchestrator.views import resources_view

        _console().print(resources_view(res))


@main.command()
@click.argument("cluster_path", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--model", help="Model id (default: the spec's); e.g. llama-3.1-70b.")
@click.option("--policy", help="quality | throughput | balanced (default: the spec's).")
@click.option("--min-context", type=click.IntRange(min=1),
              help="Tokens one sequence must be able to hold.")
@click.option("--min-precision", help="Lowest acceptable precision, e.g. q4_k_m.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole Plan as JSON.")
@click.option("--explain", is_flag=True,
              help="Also show every alternative and rejected candidate, with reasons.")
@user_errors
def plan(cluster_path, model, policy, min_context, min_precision, as_json, explain):
    """Choose precision, backend, tensor-parallel size and replicas for each node type.

    Exits non-zero when the model fits on no node type at all.
    """
    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster, require_feasible

    spec = load_cluster_spec(cluster_path)
    try:
        result = plan_cluster(spec, model=model, policy=policy, min_context=min_context,
                              min_precision=min_precision)
    except ValueError as e:  # an override that fails PlannerSpec validation
        raise UserError(_override_error(e)) from None
    if as_json:
        _echo_json(result.model_dump())
    else:
        from orchestrator.views import plan_view

        _console().print(plan_view(result, explain=explain))
    require_feasible(result)


@main.command()
@click.argument("cluster_path", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="CSV with TIMESTAMP, ContextTokens, GeneratedTokens (e.g. the Azure trace).")
@click.option("--synthetic", type=click.Choice(["poisson", "bursty"]),
              help="Generate arrivals instead of a trace (with --rate and --requests).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Requests/s of the synthetic workload.")
@click.option("--requests", "limit", type=click.IntRange(min=1),
              help="Use the first N requests of the trace (synthetic default 2000).")
@click.option("--policy", "policies", multiple=True,
              help="Routing policy (repeat for several; default: all).")
@click.option("--rate-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Multiply the arrival rate.")
@click.option("--sweep", is_flag=True,
              help="Search each policy's goodput: the highest rate at which 90%% of requests "
                   "meet both SLOs.")
@click.option("--slo-ttft", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Time-to-first-token objective, seconds.")
@click.option("--slo-tpot", type=click.FloatRange(min=0, min_open=True), default=0.1,
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
@user_errors
def simulate(cluster_path, trace_path, synthetic, rate, limit, policies, rate_scale, sweep,
             slo_ttft, slo_tpot, pools, pin_share, pin_precision, model, seed, as_json,
             plot_path, autoscale, cold_start_s):
    """Replay a trace (or a synthetic load) over the planned cluster with simulated engines.

    The replicas are timing models from the planner's performance model (prefill, decode,
    batching up to the KV capacity, chunked prefill or not); the routing policies are the
    ones the live router runs.
    """
    from rich.progress import Progress

    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster, require_feasible
    from orchestrator.router.policies import POLICIES, make
    from orchestrator.sim import report, trace as traces
    from orchestrator.sim.run import Scenario

    if bool(trace_path) == bool(synthetic):
        raise UserError("give exactly one of --trace FILE or --synthetic poisson|bursty")
    if pin_share and not pin_precision:
        raise UserError("--pin-share needs --pin-precision (e.g. f16)")
    for name in policies:
        make(name)  # validates the name before any work
    if "static_split" in policies:
        raise UserError("static_split needs pool weights; run it from "
                        "benchmarks/routing_goodput.py")
    names = list(policies) or [p for p in POLICIES if p != "static_split"]
    spec = load_cluster_spec(cluster_path)
    plan = require_feasible(plan_cluster(spec, model=model))
    unknown = set(pools) - {n.node_type for n in plan.pools()}
    if unknown:
        raise UserError(f"--only {', '.join(sorted(unknown))}: not a node type that serves "
                        f"in this plan; serving: {', '.join(n.node_type for n in plan.pools())}")
    reqs = (traces.load_trace(trace_path, limit) if trace_path
            else traces.synthetic(synthetic, rate, limit or 2000, seed))
    if pin_share:
        from orchestrator.models.precision import get_precision

        reqs = traces.pin_share(reqs, pin_share, get_precision(pin_precision).id, seed)
    scaling = None
    if autoscale:
        from orchestrator.autoscale.bounds import autoscaled
        from orchestrator.sim.run import Autoscale

        if not autoscaled(spec):
            raise UserError(f"--autoscale: no node type in {cluster_path} has an "
                            "`autoscaling:` section (docs/autoscaling.md)")
        if pools:
            raise UserError("--autoscale simulates every pool; drop --only")
        scaling = Autoscale.from_spec(plan, spec, cold_start_s=cold_start_s)
    scenario = Scenario(plan, reqs, slo_ttft, slo_tpot, seed=seed, pools=list(pools) or None,
                        autoscale=scaling)
    with Progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("simulating", total=len(names))
        results = report.simulate_policies(
            scenario, names, sweep=sweep, rate_scale=rate_scale,
            tick=lambda name: progress.update(task, advance=1, description=name))
    if plot_path:
        report.plot(results, plot_path, f"{plan.cluster}: {plan.model_display}, TTFT "
                    f"{slo_ttft:g} s, TPOT {slo_tpot * 1000:g} ms")
    if as_json:
        _echo_json({"cluster": plan.cluster, "model": plan.model, "requests": len(reqs),
                    "slo_ttft_s": slo_ttft, "slo_tpot_s": slo_tpot,
                    "results": [r.model_dump() for r in results]})
    else:
        from orchestrator.views import simulation_view

        _console().print(simulation_view(plan, results, len(reqs), slo_ttft, slo_tpot))


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

    By default the seed guide's method: a 512-token prompt (calibrated with the server's own
    token count, its start varied so no prefix cache skips the prefill), 256 output tokens,
    median of 5 runs. With --trace, an open-loop replay of the trace at --rate-scale.
    """
    import asyncio

    from orchestrator.bench import client as bc
    from orchestrator.bench import report

    if (slo_ttft is None) != (slo_tpot is None):
        raise UserError("give both --slo-ttft and --slo-tpot, or neither")

    async def go():
        cl = bc.Client(url, model, api_key, chat, timeout_s)
        try:
            return await measure(cl)
        finally:
            await cl.close()

    async def measure(cl):
        try:
            name = await cl.resolve_model()
        except Exception as e:
            raise UserError(f"cannot reach {url}: {type(e).__name__}: {e}") from None
        if trace_path:
            from orchestrator.sim.trace import load_trace, mean_rate, scale_rate

            reqs = scale_rate(load_trace(trace_path, limit), rate_scale)
            words, got = await bc.calibrate_words(cl, 256)
            ratio = words / got if got else 1.0
            samples = await bc.replay(cl, reqs, ratio, max_prompt_tokens, max_output_tokens)
            return report.replay_result(url, name, samples, mean_rate(reqs), slo_ttft,
                                        slo_tpot)
        rounds, measured = await bc.seed_method(cl, prompt_tokens, max_tokens, runs,
                                                concurrency)
        return report.seed_result(url, name, rounds, measured, concurrency)

    with _console().status("benchmarking...", spinner="dots") if not as_json else _null():
        result = asyncio.run(go())
    if as_json:
        _echo_json(result.model_dump())
    else:
        from orchestrator.views import bench_view

        _console().print(bench_view(result))


def _null():
    import contextlib

    return contextlib.nullcontext()


@main.command()
@click.argument("cluster_path", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--model", help="Model id (default: the spec's).")
@click.option("--only", "only", metavar="NODE_TYPE", help="Build only this node type.")
@click.option("--force", is_flag=True, help="Rebuild even when the store has the artifact.")
@click.option("--dry-run", is_flag=True, help="Print the build specs and build nothing.")
@click.option("--address", help="Ray cluster to build on (default: a local Ray standing in "
                                "for the spec's CPU node types and this machine's GPUs).")
@click.option("--json", "as_json", is_flag=True, help="Print specs or outcomes as JSON.")
@user_errors
def build(cluster_path, model, only, force, dry_run, address, as_json):
    """Build each node type's engine artifact on a node of that type, cached by content.

    llama.cpp: GGUF quantization to the planned type. TensorRT-LLM: an engine for the node
    type's GPU architecture. vLLM: a record of which checkpoint to load. A second build
    with the same inputs is a cache hit.
    """
    from orchestrator.build.spec import build_specs, default_store
    from orchestrator.config import load_cluster_spec
    from orchestrator.planner.select import plan_cluster, require_feasible

    spec = load_cluster_spec(cluster_path)
    plan = require_feasible(plan_cluster(spec, model=model))
    specs = build_specs(plan, spec, only)
    store = default_store(spec)
    if dry_run:
        if as_json:
            _echo_json({"store": str(store), "builds": [s.model_dump() for s in specs]})
        else:
            from orchestrator.views import build_specs_view

            _console().print(build_specs_view(specs, store))
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from orchestrator.build.local import init_ray
    from orchestrator.build.runner import run_builds

    init_ray(spec, address)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=as_json, transient=False) as progress:
        tasks = {s.node_type: progress.add_task(f"{s.node_type}: {s.describe()}", total=1)
                 for s in specs}

        def update(o):
            state = ("cached" if o.cached else "built") if o.ok else "FAILED"
            progress.update(tasks[o.node_type], completed=1,
                            description=f"{o.node_type}: {state}")

        outcomes = run_builds(specs, store, force=force, on_update=update)
    if as_json:
        _echo_json({"store": str(store), "outcomes": [o.model_dump() for o in outcomes]})
    else:
        from orchestrator.views import build_outcomes_view

        _console().print(build_outcomes_view(outcomes))
    _require_built(outcomes)


def _require_built(outcomes) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(outcomes)} builds failed: "
            + "; ".join(f"{o.node_type}: {o.error}" for o in failed))


@main.group()
@click.option("--store", "store_path", type=click.Path(file_okay=False),
              help="Artifact store (default: $ORCHESTRATOR_STORE or "
                   "~/.cache/orchestrator/artifacts).")
@click.pass_context
def artifacts(ctx, store_path):
    """List, verify and clean the artifact store."""
    from orchestrator.build.spec import default_store
    from orchestrator.build.store import ArtifactStore

    ctx.obj = ArtifactStore(store_path or default_store())


@artifacts.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def artifacts_list(store, as_json):
    """Every complete artifact, with what it was built for."""
    items = store.list()
    if as_json:
        _echo_json([m.model_dump() for m in items])
        return
    from orchestrator.views import artifacts_view

    _console().print(artifacts_view(store, items))


@artifacts.command("verify")
@click.argument("keys", nargs=-1)
@click.pass_obj
@user_errors
def artifacts_verify(store, keys):
    """Re-hash artifacts' files against their manifests (all, or the KEYS given)."""
    from orchestrator.build.store import ArtifactError

    keys = keys or [m.key for m in store.list()]
    bad = 0
    for key in keys:
        try:
            problems = store.verify(key)
        except ArtifactError as e:
            problems = [str(e)]
        bad += bool(problems)
        click.echo(f"{key}: " + ("ok" if not problems else "CORRUPTED: " + "; ".join(problems)))
    if bad:
        raise click.ClickException(f"{bad} of {len(keys)} artifacts failed verification")


@artifacts.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@click.pass_obj
def artifacts_gc(store, dry_run):
    """Remove leftovers of interrupted builds (older than an hour) and artifacts superseded
    by a newer build of the same node type, model, precision, backend and architecture."""
    newest: dict[tuple, object] = {}
    for m in store.list():
        k = (m.node_type, m.model, m.precision, m.backend, m.arch)
        if k not in newest or m.built_at > newest[k].built_at:
            newest[k] = m
    removed = store.gc(keep={m.key for m in newest.values()}, dry_run=dry_run)
    for p in removed:
        click.echo(("would remove " if dry_run else "removed ") + str(p))
    if not removed:
        click.echo("nothing to remove")


@main.command()
@click.argument("cluster_path", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--address", help="Existing Ray cluster (auto, ray://host:10001, host:6379); "
                                "default: start a local one for this spec.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the endpoint binds; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", help="Model id (default: the spec's).")
@click.option("--name", "public_name", help="Public model name (default: the model id).")
@click.option("--policy", help="Routing policy (default: slo_aware).")
@click.option("--simulated-engines", is_flag=True,
              help="Replace every engine by the simulated engine (a timing model, for "
                   "emulated clusters; answers are placeholder tokens).")
@click.option("--timeout", "timeout_s", type=float, default=600, show_default=True,
              help="Seconds to wait for every pool to be ready.")
@click.option("--sample", is_flag=True, help="Send one completion with the openai client.")
@click.option("--api-keys-file", type=click.Path(dir_okay=False),
              help="File with one API key per line (overrides serving.api_keys_file); keys "
                   "also come from the variable named by serving.api_keys_env "
                   "(ORCHESTRATOR_API_KEYS by default). No key: the endpoint is open.")
@user_errors
def up(cluster_path, address, host, port, model, public_name, policy, simulated_engines,
       timeout_s, sample, api_keys_file):
    """Plan, build what the backends need, and serve one OpenAI endpoint over all pools.

    Without --address this starts a local Ray cluster in which this machine stands in for
    the spec's CPU node types and the GPU groups it has; `orchestrator down` stops it.
    """
    from orchestrator.build.local import local_resources
    from orchestrator.build.runner import run_builds
    from orchestrator.build.spec import build_specs, default_store
    from orchestrator.config import load_cluster_spec
    from orchestrator.hardware.discovery import discover
    from orchestrator.planner.select import plan_cluster, require_feasible
    from orchestrator.router.policies import make as make_policy
    from orchestrator.serve import auth, lifecycle

    if policy:
        make_policy(policy)
    spec = load_cluster_spec(cluster_path)
    plan = require_feasible(plan_cluster(spec, model=model))
    con = _console()
    keys = auth.load_keys(spec.serving.api_keys_env,
                          api_keys_file or spec.serving.api_keys_file)
    if not keys and host not in ("127.0.0.1", "localhost", "::1"):
        con.print(f"[yellow]warning:[/] {host}:{port} is reachable from other machines and "
                  f"no API key is set (set {spec.serving.api_keys_env or 'serving.api_keys_file'})")
    started = False
    if not address:
        inv = discover()
        con.print(f"starting a local Ray cluster for {spec.name!r}")
        lifecycle.start_local_ray(os.cpu_count() or 1, len(inv.gpus),
                                  local_resources(spec, inv))
        started = True
    lifecycle.save_state({"address": address, "started_ray": started, "host": host,
                          "port": port, "cluster": str(cluster_path),
                          # where the keys are, never the keys: `status` reads them again
                          "api_keys_env": spec.serving.api_keys_env,
                          "api_keys_file": api_keys_file or spec.serving.api_keys_file})
    lifecycle.connect(address)
    artifacts = {}
    if not simulated_engines:
        specs = build_specs(plan, spec)
        with con.status("building artifacts (cached after the first time)..."):
            outcomes = run_builds(specs, default_store(spec))
        _require_built(outcomes)
        artifacts = {o.node_type: o.path for o in outcomes}
    base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    with con.status("deploying: each pool verifies its artifact and loads its engine...") \
            as st:
        _deploy(plan, spec, host, port, public_name=public_name or plan.model,
                artifacts=artifacts, engine="simulated" if simulated_engines else None,
                policy=policy, key_digests=[auth.digest(k) for k in keys])
        try:
            health = lifecycle.wait_ready(
                base, timeout_s, lambda b: st.update(_loading_line(b)),
                key=keys[0] if keys else None, serve_status_fn=lifecycle.serve_status)
        except lifecycle.PoolFailed as e:
            raise UserError(f"{e}. Pools that loaded keep serving: `orchestrator status` "
                            "shows them, `orchestrator down` stops the service") from None
    con.print(f"[bold green]serving {public_name or plan.model}[/] at {base}/v1 "
              f"({', '.join(f'{k}: {v} replica(s)' for k, v in health['replicas'].items())})")
    if sample:
        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key=keys[0] if keys else "none")
        prompt = "The three most useful things to know about GPUs are"
        r = client.completions.create(model=public_name or plan.model, prompt=prompt,
                                      max_tokens=32, temperature=0)
        con.print(f"sample completion (openai client): [italic]{prompt}[/]"
                  f"{r.choices[0].text!r} ({r.usage.completion_tokens} tokens)")
    con.print(f"try: curl {base}/v1/completions -H 'content-type: application/json' "
              f"-d '{{\"model\": \"{public_name or plan.model}\", \"prompt\": "
              f"\"Hello\", \"max_tokens\": 16}}'")
    con.print("status: orchestrator status    stop: orchestrator down")


def _loading_line(health) -> str:
    if not isinstance(health, dict) or "pools" not in health:
        return "waiting for the endpoint..."
    return "pools: " + ", ".join(f"{dep} {p.get('state', '?')}"
                                 for dep, p in health["pools"].items())


def _deploy(plan, spec, host, port, *, public_name, artifacts, engine, policy, key_digests):
    """Fixed replicas: the app object straight to Serve. Autoscaled: through a Serve config,
    which carries the application-level autoscaling policy."""
    from orchestrator.autoscale.bounds import autoscaled, scaling_config
    from orchestrator.serve import lifecycle
    from orchestrator.serve.app import build_app, deployment_name

    if not autoscaled(spec):
        lifecycle.deploy(build_app(
            plan, model_name=public_name, artifacts=artifacts, engine=engine, policy=policy,
            max_waiting=spec.serving.max_waiting, max_body_bytes=spec.serving.max_body_bytes,
            max_context=spec.serving.max_context, key_digests=key_digests,
            public_paths=spec.serving.public_paths, serving=spec.serving), host, port)
        return
    from orchestrator.k8s.values import compact_plan

    names = {n.node_type: deployment_name(n.node_type) for n in plan.pools()}
    scaling, kwargs = scaling_config(plan, spec, names, lifecycle.APP_NAME)
    args = {"plan": compact_plan(plan).model_dump_json(), "model_name": public_name,
            "artifacts": artifacts, "engine": engine, "policy": policy,
            # keys stay here: the config carries their digests only
            "serving": spec.serving.model_dump(mode="json", exclude={"api_keys_env",
                                                                     "api_keys_file"})
            | {"api_keys_env": None}, "key_digests": key_digests, "scaling": scaling}
    lifecycle.deploy_config({k: v for k, v in args.items() if v is not None}, kwargs,
                            host, port)


@main.command()
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@click.option("--url", help="Endpoint (default: the one `up` started).")
@click.option("--api-key", envvar="ORCHESTRATOR_API_KEY",
              help="Bearer key for /status (default: the first key `up` was given).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def status(address, url, api_key, as_json):
    """Pools, replicas, nodes, queue and tokens/s of the running service."""
    from orchestrator.serve import auth, lifecycle

    state = lifecycle.load_state()
    if not api_key:
        keys = auth.load_keys(state.get("api_keys_env"), state.get("api_keys_file"))
        api_key = keys[0] if keys else None
    try:
        lifecycle.connect(address or state.get("address"))
    except Exception as e:
        raise UserError(f"no Ray cluster to ask ({e}); start one with `orchestrator up`") \
            from None
    serve_st = lifecycle.serve_status()
    base = url or f"http://{state.get('host', '127.0.0.1')}:{state.get('port', 8000)}"
    if base.startswith("http://0.0.0.0"):
        base = base.replace("0.0.0.0", "127.0.0.1")
    try:
        code, live = lifecycle.http_get(f"{base}/status", key=api_key)
    except OSError as e:
        code, live = 0, {"error": str(e)}
    if code != 200:
        live = {"error": live}
    if as_json:
        _echo_json({"serve": serve_st, "endpoint": base, **live})
        return
    from orchestrator.views import status_view

    con = _console()
    con.print(status_view(serve_st, base, live.get("pools", {}), live.get("autoscaling")))
    if code == 401:
        con.print("[yellow]the endpoint wants an API key for /status:[/] pass --api-key or "
                  "set ORCHESTRATOR_API_KEY")


@main.command()
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@user_errors
def down(address):
    """Remove the service, and stop the local Ray cluster if `up` started it."""
    from orchestrator.serve import lifecycle

    for line in lifecycle.take_down(address):
        click.echo(line)


@main.command()
@click.argument("pool")
@click.argument("replicas", metavar="N|auto")
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@user_errors
def scale(pool, replicas, address):
    """Pin POOL (node type or deployment name) at N replicas, or hand it back with `auto`.

    The override goes through the autoscaling policy, so it stays within the pool's min and
    max (max: the GPU groups of that type in the inventory). Needs a node type with an
    `autoscaling:` section; pools without one have fixed replicas.
    """
    from orchestrator.serve import lifecycle

    state = lifecycle.load_state()
    try:
        lifecycle.connect(address or state.get("address"))
    except Exception as e:
        raise UserError(f"no Ray cluster to ask ({e}); start one with `orchestrator up`") \
            from None
    click.echo(lifecycle.scale_pool(pool, replicas))


@main.command("helm-values")
@click.argument("cluster_path", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--model", help="Model id (default: the spec's).")
@click.option("--name", "public_name", help="Public model name (default: the model id).")
@click.option("--image", default="orchestrator", show_default=True, help="Image repository.")
@click.option("--tag", default="0.1.0", show_default=True, help="Image tag.")
@user_errors
def helm_values_cmd(cluster_path, model, public_name, image, tag):
    """Print Helm values for helm/orchestrator generated from the plan (YAML).

    One worker group per node type that serves: GPUs, node selector (the spec's labels),
    replica bounds and the plan itself, so the chart never re-derives precision or TP.
    """
    import yaml

    from orchestrator.config import load_cluster_spec
    from orchestrator.k8s.values import helm_values
    from orchestrator.planner.select import plan_cluster, require_feasible

    spec = load_cluster_spec(cluster_path)
    plan = require_feasible(plan_cluster(spec, model=model))
    values = helm_values(plan, spec, model_name=public_name, image=image, tag=tag)
    click.echo(f"# generated by `orchestrator helm-values {cluster_path}`\n"
               + yaml.safe_dump(values, sort_keys=False, width=1 << 30))


def _override_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        return "; ".join(f"--{'-'.join(str(p) for p in x['loc']).replace('_', '-')}: "
                         f"{x['msg'].removeprefix('Value error, ')}" for x in errors())
    return str(e)


if __name__ == "__main__":
    main()
