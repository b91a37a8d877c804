"""Fixtures the unit tests share."""

import pytest
from click.testing import CliRunner

from orchestrator.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke
