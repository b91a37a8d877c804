"""The serveConfigV2 application builder, without starting Ray."""

import json

import pytest

from orchestrator.build.store import ArtifactStore, FileEntry, Manifest
from orchestrator.config import load_cluster_spec
from orchestrator.k8s.values import helm_values
from orchestrator.serve.contract import compact_plan
from orchestrator.planner.select import plan_cluster
from orchestrator.serve import entry
from tests.conftest import CLUSTERS


@pytest.fixture(scope="module")
def plan():
    return plan_cluster(load_cluster_spec(CLUSTERS / "local.yaml"))


def _artifact(store, key, node_type, precision, built_at, backend="llamaserver"):
    tmp = store.new_tmp(key)
    (tmp / "model.gguf").write_bytes(b"x")
    store.commit(tmp, Manifest(
        key=key, inputs={}, node_type=node_type, backend=backend, backend_version="1",
        arch="cpu", precision=precision, model="gemma-3-270m",
        files={"model.gguf": FileEntry(sha256="0" * 64, bytes=1)}, tool_versions={},
        built_on="h", built_at=built_at, build_seconds=0))


def test_newest_matching_artifact_per_pool(plan, tmp_path):
    store = ArtifactStore(tmp_path)
    _artifact(store, "old", "cpu-quality", "f16", 1)
    _artifact(store, "new", "cpu-quality", "f16", 2)
    _artifact(store, "wrongprec", "cpu-throughput", "f16", 3)
    _artifact(store, "q4", "cpu-throughput", "q4_k_m", 1)
    _artifact(store, "otherbackend", "cpu-throughput", "q4_k_m", 4, backend="llamacpp")
    assert {n.choice.backend for n in plan.pools()} == {"llamaserver"}  # the demo's
    got = entry.newest_artifacts(plan, str(tmp_path))
    assert got == {"cpu-quality": str(tmp_path / "new"), "cpu-throughput": str(tmp_path / "q4")}


def test_app_from_helm_values_plan(plan, tmp_path):
    values = helm_values(plan, load_cluster_spec(CLUSTERS / "local.yaml"))
    assert json.loads(values["plan"])["node_types"][0]["rejected"] == []
    app = entry.app({"plan": values["plan"], "engine": "simulated", "store": str(tmp_path)})
    assert app is not None
    with pytest.raises(RuntimeError, match="no built artifact .* cpu-quality, cpu-throughput"):
        entry.app({"plan": compact_plan(plan).model_dump(), "store": str(tmp_path)})


def test_app_args_survive_the_serve_config_round_trip(plan):
    """What `up` writes into the Serve config is what the entry point reads back."""
    from orchestrator.serve.contract import AppArgs, app_args

    spec = load_cluster_spec(CLUSTERS / "local.yaml")
    args, policy_kwargs = app_args(plan, spec, model_name="m", artifacts={"a": "/x"},
                                   key_digests=["d"])
    back = AppArgs.model_validate(json.loads(json.dumps(args.config_args())))
    assert back == args and policy_kwargs is None
    assert back.serving.api_keys_env is None  # keys stay with `up`; digests travel
    with pytest.raises(ValueError, match="bogus"):
        AppArgs.model_validate({**args.config_args(), "bogus": 1})
