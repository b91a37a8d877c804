"""Build specs from plans, and the artifact store, without Ray."""

import json
import os

import pytest
import yaml

from orchestrator.backends import get_backend
from orchestrator.errors import MissingExtraError
from orchestrator.build.spec import build_specs
from orchestrator.build.store import ArtifactError, ArtifactStore, FileEntry, Manifest
from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.errors import UserError
from orchestrator.planner.select import plan_cluster
from tests.conftest import CLUSTERS


@pytest.fixture(scope="module")
def mixed_specs():
    spec = load_cluster_spec(CLUSTERS / "mixed.yaml")
    return {s.node_type: s for s in build_specs(plan_cluster(spec), spec)}


def test_trtllm_specs_for_the_mixed_cluster(mixed_specs):
    a100, r3090 = mixed_specs["a100-80g-sxm-x4-nvlink"], mixed_specs["rtx-3090-x2-nvlink"]
    assert (a100.backend, a100.precision, a100.arch, a100.tp) == ("trtllm", "f16", "sm80", 4)
    assert a100.params["quant_algo"] is None and a100.params["dtype"] == "float16"
    assert a100.params["max_seq_len"] == 131072  # KV room exceeds the model's limit
    assert (r3090.backend, r3090.precision, r3090.arch, r3090.tp) == (
        "trtllm", "awq_int4", "sm86", 2)
    assert r3090.params["quant_algo"] == "W4A16_AWQ"
    # the checkpoints mixed.yaml names: F16 for the A100s, ModelOpt W4A16 for the 3090s
    assert (a100.source_kind, a100.source) == ("hf", "/models/Llama-3.1-70B-Instruct")
    assert r3090.source_kind == "modelopt_w4a16" and r3090.source.endswith("-modelopt")
    # lengths from the plan's KV budget: one sequence may use all of it
    assert r3090.params["max_seq_len"] == 13635
    assert r3090.params["max_input_len"] == r3090.params["max_seq_len"] - 1
    assert r3090.params["max_batch_size"] == 6  # typical 2048-token sequences that fit
    assert (a100.resource, a100.gpus) == ("gpu_group:a100-80g-sxm-x4-nvlink", 4)


def test_fp8_engine_only_where_sm89():
    spec = ClusterSpec.model_validate({"name": "ada", "model": "llama-3.1-8b", "node_types": [
        {"name": "l40s-x1", "gpu": "l40s", "gpus_per_node": 1, "precisions": ["fp8_w8a8"],
         "backends": ["trtllm"]}]})
    (s,) = build_specs(plan_cluster(spec), spec)
    assert (s.arch, s.params["quant_algo"]) == ("sm89", "FP8")


def test_local_specs_use_the_packaged_gguf():
    spec = load_cluster_spec(CLUSTERS / "local.yaml")
    specs = build_specs(plan_cluster(spec), spec)
    assert [(s.node_type, s.params["gguf_type"]) for s in specs] == [
        ("cpu-quality", "MOSTLY_F16"), ("cpu-throughput", "MOSTLY_Q4_K_M")]
    assert all(s.arch == "cpu" and s.gpus == 0 for s in specs)


def test_only_names_a_real_node_type(mixed_specs):
    spec = load_cluster_spec(CLUSTERS / "mixed.yaml")
    with pytest.raises(UserError, match="--only 'x': no such node type"):
        build_specs(plan_cluster(spec), spec, only="x")


def test_trtllm_missing_extra_is_reported(mixed_specs):
    try:
        import tensorrt_llm  # noqa: F401
        pytest.skip("tensorrt_llm is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingExtraError, match=r"pip install 'orchestrator\[trtllm\]'"):
        get_backend("trtllm").version()
    with pytest.raises(MissingExtraError, match="tensorrt-llm is not installed"):
        get_backend("trtllm").build(mixed_specs["rtx-3090-x2-nvlink"], None)


def _manifest(key, files, arch="cpu", version="1.0"):
    return Manifest(key=key, inputs={}, node_type="n", backend="llamacpp",
                    backend_version=version, arch=arch, precision="f16", model="m",
                    files=files, tool_versions={}, built_on="h", built_at=0, build_seconds=0)


def _put(store, key, content=b"weights", **kw):
    tmp = store.new_tmp(key)
    (tmp / "model.gguf").write_bytes(content)
    from orchestrator.build.store import sha256_file

    entry = FileEntry(sha256=sha256_file(tmp / "model.gguf"), bytes=len(content))
    return store.commit(tmp, _manifest(key, {"model.gguf": entry}, **kw))


def test_store_commit_verify_and_refusals(tmp_path):
    store = ArtifactStore(tmp_path)
    path = _put(store, "k1")
    assert store.has("k1") and store.verify("k1") == [] and not store.temp_dirs()
    assert json.loads((path / "manifest.json").read_text())["key"] == "k1"
    assert store.load("k1", arch="cpu", backend_version="1.0").key == "k1"
    with pytest.raises(ArtifactError, match="built for cpu, this node is sm86"):
        store.load("k1", arch="sm86")
    with pytest.raises(ArtifactError, match="built with llamacpp 1.0, this node has 2.0"):
        store.load("k1", backend_version="2.0")
    (path / "model.gguf").write_bytes(b"weightz")  # same size, different bytes
    assert store.verify("k1") == ["model.gguf: sha256 differs from the manifest"]
    with pytest.raises(ArtifactError, match="corrupted"):
        store.load("k1")


def test_interrupted_build_is_not_an_artifact_and_gc_cleans_it(tmp_path):
    store = ArtifactStore(tmp_path)
    tmp = store.new_tmp("k2")
    (tmp / "model.gguf").write_bytes(b"half")
    assert not store.has("k2") and store.list() == []
    assert store.gc(min_tmp_age_s=3600) == []  # a build may still be running
    os.utime(tmp, (0, 0))
    assert store.gc() == [tmp] and not tmp.exists()


def test_sources_are_paths_or_file_uris(tmp_path):
    from orchestrator.build.spec import resolve_source
    from orchestrator.config import ClusterSpec

    def spec(where):
        data = yaml.safe_load((CLUSTERS / "local.yaml").read_text())
        data["artifacts"] = {"sources": {"gguf": where}}
        return ClusterSpec.model_validate(data)

    assert resolve_source(spec(f"file://{tmp_path}/m.gguf"), "gguf", "gemma-3-270m") == \
        f"{tmp_path}/m.gguf"
    assert resolve_source(spec(f"{tmp_path}/m.gguf"), "gguf", "gemma-3-270m") == \
        f"{tmp_path}/m.gguf"
    with pytest.raises(UserError, match="a path, file://PATH or hf://"):
        resolve_source(spec("s3://bucket/m.gguf"), "gguf", "gemma-3-270m")
