"""`build` and `artifacts`: engine artifacts per node type, and the store that keeps them."""

from __future__ import annotations

import click

from orchestrator.cli.common import cluster_argument, console, echo_json, main, user_errors


@main.command()
@cluster_argument
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
    from orchestrator.build.spec import specs_for_file

    spec, specs, store = specs_for_file(cluster_path, model=model, only=only)
    if dry_run:
        if as_json:
            echo_json({"store": str(store), "builds": [s.model_dump() for s in specs]})
        else:
            from orchestrator.views import build_specs_view

            from orchestrator.build.spec import shared_store

            where = (f"{store}, shared by every node" if shared_store(spec) else
                     f"each node its own; here {store}")
            console().print(build_specs_view(specs, where))
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from orchestrator.build.runner import build_on, require_built, require_transferred
    from orchestrator.build.spec import shared_store

    from orchestrator.views import TransferColumns

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), *TransferColumns(),
                  TimeElapsedColumn(), disable=as_json, transient=False) as progress:
        tasks = {s.node_type: progress.add_task(f"{s.node_type}: {s.describe()}", total=None)
                 for s in specs}
        pulls: dict[str, int] = {}

        def update(o):
            state = ("cached" if o.cached else "built") if o.ok else "FAILED"
            progress.update(tasks[o.node_type], total=1, completed=1,
                            description=f"{o.node_type}: {state}")

        def moved(node_type, node, done, total):
            if node not in pulls:
                pulls[node] = progress.add_task(f"{node_type}: to node {node[:8]}",
                                                total=total, transfer=True)
            progress.update(pulls[node], completed=done)

        outcomes, transfers = build_on(spec, address, specs, shared_store(spec), force=force,
                                       on_update=update, on_progress=moved)
    if as_json:
        echo_json({"store": str(store), "outcomes": [o.model_dump() for o in outcomes],
                   "transfers": [t.model_dump() for t in transfers]})
    else:
        from orchestrator.views import build_outcomes_view, transfers_view

        console().print(build_outcomes_view(outcomes))
        if transfers:
            console().print(transfers_view(transfers))
    require_built(outcomes)
    require_transferred(transfers)


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
        echo_json([m.model_dump() for m in items])
        return
    from orchestrator.views import artifacts_view

    console().print(artifacts_view(store, items))


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
        raise ArtifactError(f"{bad} of {len(keys)} artifacts failed verification")


@artifacts.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@click.pass_obj
def artifacts_gc(store, dry_run):
    """Remove leftovers of interrupted builds (older than an hour) and artifacts superseded
    by a newer build of the same node type, model, precision, backend and architecture."""
    removed = store.gc(keep={m.key for m in store.newest().values()}, dry_run=dry_run)
    for p in removed:
        click.echo(("would remove " if dry_run else "removed ") + str(p))
    if not removed:
        click.echo("nothing to remove")
