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
@click.option("--json", "as_json", is_flag=True,
              help="Print specs or outcomes as JSON on stdout (progress stays on stderr).")
@user_errors
def build(cluster_path, model, only, force, dry_run, address, as_json):
    """Build each node type's engine artifact on a node of that type, cached by content.

    llama.cpp: GGUF quantization to the planned type. TensorRT-LLM: an engine for the node
    type's GPU architecture. vLLM: a record of which checkpoint to load. A second build
    with the same inputs is a cache hit.

    Progress goes to stderr: on a terminal, a row per node type's build with its time, and
    a bar per node that pulls an artifact from a peer (MB, MB/s, time left); in a log, one
    line per change, byte counts at most every 5 s.
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
    from orchestrator.build.runner import build_on, require_built, require_transferred
    from orchestrator.build.spec import shared_store
    from orchestrator.cli.progress import BuildEvents, TaskUpdate, progress_display

    events = BuildEvents()
    with progress_display(lines=not as_json) as show:
        show(events.started(specs))
        outcomes, transfers = build_on(
            spec, address, specs, shared_store(spec), force=force,
            on_update=lambda o: show(events.built(o)),
            on_progress=lambda *moved: show(events.moved(*moved)),
            step=lambda line: show([TaskUpdate("step", line)]))
        show([TaskUpdate("step", "builds and transfers done", finished=True)])
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
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@click.pass_obj
def artifacts_list(store, as_json):
    """Every complete artifact, with what it was built for (keys shortened to 12 digits;
    --json has them whole)."""
    items = store.list()
    if as_json:
        echo_json([m.model_dump() for m in items])
        return
    from orchestrator.views import artifacts_view

    console().print(artifacts_view(store, items))


def _full_keys(store, given) -> list[str]:
    """Each key as given, or the one stored key it begins (what `artifacts list` shows)."""
    stored = [m.key for m in store.list()]
    out = []
    for k in given:
        found = [s for s in stored if s.startswith(k)]
        out.append(found[0] if len(found) == 1 else k)
    return out


@artifacts.command("verify")
@click.argument("keys", nargs=-1)
@click.option("--json", "as_json", is_flag=True,
              help="Print [{key, ok, problems}] as JSON (the exit status is the same).")
@click.pass_obj
@user_errors
def artifacts_verify(store, keys, as_json):
    """Re-hash artifacts' files against their manifests (all, or the KEYS given: whole, or
    their first digits as `artifacts list` shows them). Exits 1 if any is corrupted."""
    from orchestrator.build.store import ArtifactError

    keys = _full_keys(store, keys) if keys else [m.key for m in store.list()]
    results = []
    for key in keys:
        try:
            problems = store.verify(key)
        except ArtifactError as e:
            problems = [str(e)]
        results.append({"key": key, "ok": not problems, "problems": problems})
        if not as_json:
            click.echo(f"{key}: " + ("ok" if not problems
                                     else "CORRUPTED: " + "; ".join(problems)))
    if as_json:
        echo_json(results)
    bad = sum(not r["ok"] for r in results)
    if bad:
        raise ArtifactError(f"{bad} of {len(keys)} artifacts failed verification")


@artifacts.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"dry_run": ..., "removed": [paths]} as JSON.')
@click.pass_obj
def artifacts_gc(store, dry_run, as_json):
    """Remove leftovers of interrupted builds (older than an hour) and artifacts superseded
    by a newer build of the same node type, model, precision, backend and architecture."""
    removed = store.gc(keep={m.key for m in store.newest().values()}, dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "removed": [str(p) for p in removed]})
        return
    for p in removed:
        click.echo(("would remove " if dry_run else "removed ") + str(p))
    if not removed:
        click.echo("nothing to remove")
