"""What every command shares: the group, the console, and the one place where user errors
become ClickException."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings

import click
from rich.console import Console

from orchestrator.errors import Deprecated, OrchestratorError


def console(width: int = 100) -> Console:
    """The terminal's width on a terminal; piped, ``width`` (rich would take 80)."""
    return Console(width=None if sys.stdout.isatty() else width)


def user_errors(fn):
    """UserError (bad input) and OrchestratorError (a fault with a message made for the
    operator) become one line and exit status 1, without a traceback. Old spellings in a
    spec still work and say so on stderr."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # With --json, stdout carries the JSON alone: whatever else writes there meanwhile
        # (Ray's driver prints its raylets' messages) goes to stderr
        quiet = contextlib.redirect_stdout(sys.stderr) if kwargs.get("as_json") \
            else contextlib.nullcontext()
        _json_out.append(sys.stdout)
        with warnings.catch_warnings(record=True) as caught, quiet:
            warnings.simplefilter("always", Deprecated)
            try:
                return fn(*args, **kwargs)
            except OrchestratorError as e:
                raise click.ClickException(str(e)) from None
            finally:
                _json_out.pop()
                for w in {str(w.message): w for w in caught
                          if issubclass(w.category, Deprecated)}:
                    click.echo(f"warning: {w}", err=True)

    return wrapper


_json_out: list = []  # the command's own stdout, while --json sends the rest to stderr


def echo_json(data, compact: bool = False) -> None:
    """`data` on the command's stdout; `compact`: one line (a stream of them, JSON lines)."""
    click.echo(json.dumps(data, indent=None if compact else 2, sort_keys=False),
               file=_json_out[-1] if _json_out else None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestrator")
def main():
    """Serve one LLM from one OpenAI-compatible endpoint across unequal GPU machines.

    Typical flow: `discover` each machine, write a cluster spec (see clusters/),
    `plan` it, then `up` (or `build` and `up --address` on a cluster).
    """


def cluster_argument(fn):
    return click.argument("cluster_path", metavar="CLUSTER.yaml",
                          type=click.Path(dir_okay=False))(fn)
