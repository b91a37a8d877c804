"""Command line: parse, call one function, print. Each module registers its commands on
`main`; user errors become ClickException in cli/common.py and only there."""

from orchestrator.cli import bench, build, inventory, planning, serving, simulate  # noqa: F401
from orchestrator.cli.common import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
