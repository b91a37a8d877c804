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
@user_errors
def up(cluster_path, address, host, port, model, public_name, policy, simulated_engines,
       timeout_s, sample, api_keys_file):
    """Plan, build what the backends need, and serve one OpenAI endpoint over all pools.

    Without --address this starts a local Ray cluster in which this machine stands in for
    the spec's CPU node types and the GPU groups it has; `orchestrator down` stops it.
    """
    from orchestrator.serve.up import UpOptions, bring_up

    con = console()
    opts = UpOptions(address=address, host=host, port=port, model=model,
                     public_name=public_name, policy=policy,
                     simulated_engines=simulated_engines, timeout_s=timeout_s,
                     api_keys_file=api_keys_file)
    with con.status("planning...") as st:
        served = bring_up(cluster_path, opts, step=st.update)
    for w in served.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    base, name = served.base, served.model
    con.print(f"[bold green]serving {name}[/] at {base}/v1 "
              f"({', '.join(f'{k}: {v} replica(s)' for k, v in served.replicas.items())})")
    for dep, what in served.engines.items():
        con.print(f"  {dep}: {what}")
    if sample:
        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key=served.key or "none")
        prompt = "The three most useful things to know about GPUs are"
        r = client.completions.create(model=name, prompt=prompt, max_tokens=32,
                                      temperature=0)
        con.print(f"sample completion (openai client): [italic]{prompt}[/]"
                  f"{r.choices[0].text!r} ({r.usage.completion_tokens} tokens)")
    con.print(f"try: curl {base}/v1/completions -H 'content-type: application/json' "
              f"-d '{{\"model\": \"{name}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'")
    con.print("status: orchestrator status    stop: orchestrator down")


@main.command()
@click.option("--address", help="Ray cluster (default: the one `up` used).")
@click.option("--url", help="Endpoint (default: the one `up` started).")
@click.option("--api-key", envvar="ORCHESTRATOR_API_KEY",
              help="Bearer key for /status (default: the first key `up` was given).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def status(address, url, api_key, as_json):
    """Pools, replicas, nodes, queue and tokens/s of the running service."""
    from orchestrator.serve.up import service_status

    st = service_status(address, url, api_key)
    if as_json:
        echo_json({"serve": st.serve, "endpoint": st.endpoint, **st.live})
        return
    from orchestrator.views import status_view

    con = console()
    con.print(status_view(st.serve, st.endpoint, st.live.get("pools", {}),
                          st.live.get("autoscaling")))
    if st.code == 401:
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
    from orchestrator.serve.up import scale as scale_pool

    click.echo(scale_pool(pool, replicas, address))
