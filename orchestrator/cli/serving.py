"""`up`, `status`, `down` and `scale`: the running service. Each calls one function of
serve/up.py or serve/lifecycle.py and prints what it returns."""

from __future__ import annotations

import click

from orchestrator.cli.common import cluster_argument, console, echo_json, main, user_errors


@main.command()
@cluster_argument
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
@click.option("--json", "as_json", is_flag=True,
              help="Print what is served (endpoint, model, replicas, engines, warnings) as "
                   "JSON on stdout; progress stays on stderr.")
@user_errors
def up(cluster_path, address, host, port, model, public_name, policy, simulated_engines,
       timeout_s, sample, api_keys_file, as_json):
    """Plan, build what the backends need, and serve one OpenAI endpoint over all pools.

    Without --address this starts a local Ray cluster in which this machine stands in for
    the spec's CPU node types and the GPU groups it has; `orchestrator down` stops it.

    Progress goes to stderr: on a terminal, the current phase, a row per node type's build,
    a bar per artifact transfer (MB/s, time left) and the wait for readiness (pools ready
    of all, which still load, elapsed; a failed pool's reason); in a log, one line each.
    """
    from orchestrator.cli.progress import (BuildEvents, ReadinessEvents, TaskUpdate,
                                           progress_display)
    from orchestrator.serve.up import UpHooks, UpOptions, bring_up

    opts = UpOptions(address=address, host=host, port=port, model=model,
                     public_name=public_name, policy=policy,
                     simulated_engines=simulated_engines, timeout_s=timeout_s,
                     api_keys_file=api_keys_file)
    builds, ready = BuildEvents(), ReadinessEvents()
    with progress_display(lines=not as_json) as show:
        show([TaskUpdate("step", "planning...")])
        hooks = UpHooks(step=lambda line: show([TaskUpdate("step", line)]),
                        building=lambda specs: show(builds.started(specs)),
                        built=lambda o: show(builds.built(o)),
                        moved=lambda *moved: show(builds.moved(*moved)),
                        waiting=lambda body: show(ready.waited(body)))
        try:
            served = bring_up(cluster_path, opts, hooks=hooks)
        except Exception as e:  # the reason stays on the display; the error says it again
            show([TaskUpdate("step", f"gave up: {str(e).splitlines()[0][:200]}",
                             finished=True)])
            raise
        show(ready.ready(served.replicas) + [TaskUpdate("step", "serving", finished=True)])
    base, name = served.base, served.model
    answer = _sample(base, name, served.key) if sample else None
    if as_json:
        echo_json({"endpoint": f"{base}/v1", "model": name, "replicas": served.replicas,
                   "engines": served.engines, "warnings": served.warnings,
                   "sample": answer})
        return
    con = console()
    for w in served.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    con.print(f"[bold green]serving {name}[/] at {base}/v1 "
              f"({', '.join(f'{k}: {v} replica(s)' for k, v in served.replicas.items())})")
    for dep, what in served.engines.items():
        con.print(f"  {dep}: {what}")
    if answer:
        con.print(f"sample completion (openai client): [italic]{answer['prompt']}[/]"
                  f"{answer['text']!r} ({answer['tokens']} tokens)")
    con.print(f"try: curl {base}/v1/completions -H 'content-type: application/json' "
              f"-d '{{\"model\": \"{name}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'")
    con.print("status: orchestrator status    stop: orchestrator down")


def _sample(base: str, name: str, key: str | None) -> dict:
    """One completion through the openai client, as a user's first request would go."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key=key or "none")
    prompt = "The three most useful things to know about GPUs are"
    r = client.completions.create(model=name, prompt=prompt, max_tokens=32, temperature=0)
    return {"prompt": prompt, "text": r.choices[0].text, "tokens": r.usage.completion_tokens}


@main.command()
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@click.option("--url", help="Endpoint (default: the one `up` started).")
@click.option("--api-key", envvar="ORCHESTRATOR_API_KEY",
              help="Bearer key for /status (default: the first key `up` was given).")
@click.option("--json", "as_json", is_flag=True,
              help="Print Serve's and the endpoint's status as JSON (with --watch: one "
                   "object per line per refresh).")
@click.option("--watch", is_flag=True,
              help="Refresh every --interval seconds, in place on a terminal, until Ctrl-C "
                   "(which exits 0).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(min=1),
              help="With --watch: stop after N refreshes (default: until Ctrl-C).")
@user_errors
def status(address, url, api_key, as_json, watch, interval, count):
    """Pools, replicas, nodes, queue and tokens/s of the running service.

    With --watch the view is redrawn every --interval seconds (in place on a terminal,
    one frame after another in a log) until Ctrl-C, which ends it with exit status 0.
    """
    from orchestrator.serve.up import service_status

    def fetch():
        return service_status(address, url, api_key)

    def as_data(st):
        return {"serve": st.serve, "endpoint": st.endpoint, **st.live}

    if watch:
        from orchestrator.cli import watch as watching

        watching.watch(fetch, _status_view, console(), interval=interval, count=count,
                       emit_json=(lambda st: echo_json(as_data(st), compact=True))
                       if as_json else None, sleep=_sleep)
        return
    st = fetch()
    if as_json:
        echo_json(as_data(st))
        return
    console().print(_status_view(st))


def _sleep(seconds: float) -> None:  # status --watch's wait; tests replace it
    import time

    time.sleep(seconds)


def _status_view(st):
    from rich.console import Group
    from rich.text import Text

    from orchestrator.views import status_view

    parts = [status_view(st.serve, st.endpoint, st.live.get("pools", {}),
                         st.live.get("autoscaling"))]
    if st.code == 401:
        parts.append(Text("the endpoint wants an API key for /status: pass --api-key or set "
                          "ORCHESTRATOR_API_KEY", style="yellow"))
    elif st.code != 200 and st.live.get("error"):
        parts.append(Text(f"the endpoint did not answer /status: {st.live['error']}",
                          style="yellow"))
    return Group(*parts)


@main.command()
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@click.option("--json", "as_json", is_flag=True, help='Print {"done": [what was done]}.')
@user_errors
def down(address, as_json):
    """Remove the service, and stop the local Ray cluster if `up` started it."""
    from orchestrator.serve import lifecycle

    done = lifecycle.take_down(address)
    if as_json:
        echo_json({"done": done})
        return
    for line in done:
        click.echo(line)


@main.command()
@click.argument("pool")
@click.argument("replicas", metavar="N|auto")
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"pool", "replicas", "result"} as JSON.')
@user_errors
def scale(pool, replicas, address, as_json):
    """Pin POOL (node type or deployment name) at N replicas, or hand it back with `auto`.

    The override goes through the autoscaling policy, so it stays within the pool's min and
    max (max: the GPU groups of that type in the inventory). Needs a node type with an
    `autoscaling:` section; pools without one have fixed replicas.
    """
    from orchestrator.serve.up import scale as scale_pool

    result = scale_pool(pool, replicas, address)
    if as_json:
        echo_json({"pool": pool, "replicas": replicas, "result": result})
    else:
        click.echo(result)
