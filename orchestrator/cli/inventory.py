"""Commands about this node: what GPUs it has and how it joins a Ray cluster."""

from __future__ import annotations

import click

from orchestrator.cli.common import console, echo_json, main, user_errors


def _fixture_option(fn):
    return click.option(
        "--fixture", metavar="NAME|PATH",
        help="Replay a recorded NVML device table instead of this machine's GPUs "
             "(e.g. 2x3090-nvlink, 4xa100-sxm, 8xh100-sxm, mixed-pcie, no-driver).")(fn)


def _nvml(fixture: str | None):
    """What discovery reads: the fixture replayed, or this node's NVML."""
    if fixture:
        from orchestrator.hardware.fake_nvml import FakeNVML

        return FakeNVML.from_name(fixture)
    from orchestrator.hardware.discovery import load_nvml

    return load_nvml()


def _inventory(fixture: str | None):
    from orchestrator.hardware.discovery import discover

    return discover(_nvml(fixture))


@main.command()
@_fixture_option
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@click.option("--record", "record_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write this node's NVML readings as a fixture (the --fixture "
                   "format) to this file, e.g. to plan a node type elsewhere.")
@user_errors
def discover(fixture, as_json, record_path):
    """Show this node's GPUs (via NVML) and how they group into GPU groups.

    GPUs joined by NVLink form one group; a model's remaining GPUs form a PCIe group.
    Without an NVIDIA driver the inventory is CPU-only.
    """
    from orchestrator.hardware.discovery import discover

    nvml = _nvml(fixture)
    inv = discover(nvml)
    if as_json:
        echo_json(inv.model_dump())
    else:
        from orchestrator.views import inventory_view

        console().print(inventory_view(inv))
    if record_path:
        _record(nvml, f"fixture {fixture}" if fixture else "this node", record_path)


@main.command("node-resources")
@_fixture_option
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False),
              help="Name each GPU group after the matching node type of this cluster spec.")
@click.option("--node-type", help="Advertise this node as this node type (required on a "
                                  "CPU-only node).")
@click.option("--json", "as_json", is_flag=True, help="Print the flags as JSON.")
@click.option("--shell", "as_shell", is_flag=True,
              help="Print only the flags, shell-quoted on one line, for "
                   "eval \"ray start --address=HEAD_IP:6379 $(orchestrator node-resources ... "
                   "--shell)\".")
@user_errors
def node_resources_cmd(fixture, cluster_path, node_type, as_json, as_shell):
    """Print the `ray start` flags that make this node schedulable by GPU group.

    Each GPU group becomes one unit of the custom resource gpu_group:<type>, because Ray's
    own detection names consumer cards generically (an RTX 3090 is "G").
    """
    from orchestrator.config import load_cluster_spec
    from orchestrator.hardware.resources import node_resources

    spec = load_cluster_spec(cluster_path) if cluster_path else None
    res = node_resources(_inventory(fixture), spec, node_type)
    if as_shell:
        import shlex

        click.echo(shlex.join(res.ray_start_args()))
        return
    if as_json:
        echo_json({**res.model_dump(), "ray_start_args": res.ray_start_args()})
    else:
        from orchestrator.views import resources_view

        console().print(resources_view(res))


def _record(nvml, what: str, path: str) -> None:
    """The readings discovery just made, through the same ``nvml``, as a fixture file."""
    import json

    from orchestrator.errors import UserError
    from orchestrator.hardware.record import record

    try:
        table = record(nvml, f"recorded from {what} by `orchestrator discover --record`")
    except nvml.NVMLError as e:
        raise UserError(f"--record: NVML cannot be read here ({e}); nothing to record") \
            from None
    with open(path, "w") as f:
        json.dump(table, f, indent=1)
    click.echo(f"recorded {len(table['devices'])} GPU(s) to {path}", err=True)
