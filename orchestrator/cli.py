"""Command line: parse, call, print. User errors become ClickException here and only here."""

from __future__ import annotations

import functools
import json
import sys

import click
from rich.console import Console

from orchestrator.errors import NoFeasiblePlanError, UserError


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


def _override_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        return "; ".join(f"--{'-'.join(str(p) for p in x['loc']).replace('_', '-')}: "
                         f"{x['msg'].removeprefix('Value error, ')}" for x in errors())
    return str(e)


if __name__ == "__main__":
    main()
