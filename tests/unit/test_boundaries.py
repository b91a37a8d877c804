"""The package boundaries hold (pyproject.toml's import-linter contracts: only serve/ and
build/ import Ray; the pure core imports neither serve/ nor build/; engines do not import
build/) and the code passes ruff (pycodestyle errors and pyflakes)."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def test_import_contracts_are_kept():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" not in r.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_ruff_passes():
    r = subprocess.run([_tool("ruff"), "check", "orchestrator", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "orchestrator").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these by concern: {long}"


def test_a_backend_is_one_module():
    """Each backend's facts, build, engine arguments, placement and engine live in
    backends/<id>.py, and nothing else in the package names a backend to branch on it."""
    import re

    from orchestrator.backends import BACKENDS
    from orchestrator.backends.base import Backend

    for bid, b in BACKENDS.items():
        module = f"orchestrator.backends.{bid}"
        assert type(b).__module__ == module
        assert b.engine_class.startswith(module + ":")
        for method in ("build_params", "build", "engine_args"):
            assert getattr(type(b), method) is not getattr(Backend, method), (bid, method)
    ids = "|".join(BACKENDS)
    pattern = re.compile(rf"""["']({ids})["']""")
    named = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "orchestrator").rglob("*.py")
             if "backends" not in p.parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not named, f"backend ids outside orchestrator/backends/: {named}"
