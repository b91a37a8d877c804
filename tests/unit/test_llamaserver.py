"""The llama-server backend's pure parts: the compile flags per node type, the check that a
binary runs on the build node, the plan's slots and context per slot, the command line the
replica starts, and how its /metrics text is read."""

import os

import pytest

from orchestrator.backends import get_backend
from orchestrator.backends import llama_server_bin as binsrc
from orchestrator.backends.llamaserver import parse_metrics, server_command
from orchestrator.config import ClusterSpec
from orchestrator.errors import UserError
from orchestrator.planner.select import plan_cluster
from tests.conftest import cluster, node_type


def _cpu_cluster(**cpu):
    return ClusterSpec.model_validate(cluster(
        node_type(name="cpu-a", gpu=None, gpus_per_node=None, interconnect=None,
                  cpu={"cores": 1, "memory_gb": 1.0, **cpu}, backends=["llamaserver"]),
        model="gemma-3-270m", planner={"min_context": 2048}))


def test_cpu_flags_name_one_instruction_set_and_never_native():
    flags = binsrc.cmake_flags({"isa": "avx2"})
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags
    assert "-DGGML_AVX512=OFF" in flags and "-DGGML_AMX_INT8=OFF" in flags
    assert "-DGGML_AVX512=ON" in binsrc.cmake_flags({"isa": "avx512"})
    assert binsrc.cmake_flags({"isa": "avx2"}) != binsrc.cmake_flags({"isa": "sse4.2"})
    with pytest.raises(UserError, match="valid: sse4.2, avx2, avx512, avx512-vnni"):
        binsrc.cmake_flags({"isa": "native"})


def test_cuda_flags_carry_the_architecture():
    flags = binsrc.cmake_flags({"cuda_arch": "86"})
    assert "-DGGML_CUDA=ON" in flags and "-DCMAKE_CUDA_ARCHITECTURES=86" in flags


def test_the_binary_key_follows_source_version_and_flags():
    a = binsrc.binary_key("d1", binsrc.cmake_flags({"isa": "avx2"}))
    assert a == binsrc.binary_key("d1", binsrc.cmake_flags({"isa": "avx2"}))
    assert a != binsrc.binary_key("d2", binsrc.cmake_flags({"isa": "avx2"}))
    assert a != binsrc.binary_key("d1", binsrc.cmake_flags({"isa": "avx512"}))


def test_a_node_without_the_instruction_set_refuses_the_build():
    avx2 = {"avx", "avx2", "fma", "f16c", "bmi2", "sse4_2"}
    with pytest.raises(UserError, match="lacks avx512f, avx512cd, avx512vl"):
        binsrc.check_runs_here({"isa": "avx512"}, avx2)
    binsrc.check_runs_here({"isa": "avx2"}, avx2)
    vnni = binsrc.cmake_flags({"isa": "avx512-vnni"})
    assert "-DGGML_AVX512_VNNI=ON" in vnni and "-DGGML_AMX_INT8=OFF" in vnni


def test_the_plan_sizes_slots_to_the_kv_room_and_each_slot_holds_min_context():
    spec = _cpu_cluster()
    n = plan_cluster(spec).node_types[0]
    c = n.choice
    assert c.backend == "llamaserver" and c.perf.chunked_prefill
    b = get_backend("llamaserver")
    slots = c.perf.batch
    assert 1 < slots <= b.max_batch
    assert slots == min(b.max_batch, c.memory.kv_tokens // 2048)
    ctx = b.serving_context(n)
    assert 2048 <= ctx and slots * ctx <= c.memory.kv_tokens
    assert b.replica_batch(c) == slots
    args = b.engine_args(n, spec.model, "/store/key")
    assert args["slots"] == slots and args["ctx_per_slot"] == ctx
    assert args["binary"] == "/store/key/bin/llama-server"


def test_llamaserver_is_chosen_only_where_a_node_type_asks_for_it():
    spec = ClusterSpec.model_validate(cluster(
        node_type(name="cpu-a", gpu=None, gpus_per_node=None, interconnect=None,
                  cpu={"cores": 1, "memory_gb": 1.0}), model="gemma-3-270m",
        planner={"min_context": 2048}))
    assert plan_cluster(spec).node_types[0].choice.backend == "llamacpp"


def test_build_spec_names_the_binary_target():
    from orchestrator.build.spec import build_specs

    spec = _cpu_cluster(isa="avx512")
    (bs,) = build_specs(plan_cluster(spec), spec)
    assert bs.params["server"] == {"isa": "avx512"}
    assert "llama-server 0.3.16 (CPU, avx512)" in bs.describe()
    gpu = ClusterSpec.model_validate(cluster(node_type(backends=["llamaserver"])))
    (g,) = build_specs(plan_cluster(gpu), gpu)
    assert g.params["server"] == {"cuda_arch": "86"} and "CUDA sm_86" in g.describe()


def test_server_command_binds_loopback_with_the_plans_numbers():
    cmd = server_command("/b/llama-server", "/m.gguf", 4321, slots=4, ctx_per_slot=2048,
                         threads=1, gpu_layers=0)
    joined = " ".join(cmd)
    assert "--host 127.0.0.1 --port 4321" in joined
    assert "-c 8192 -np 4" in joined and "-t 1 -tb 1" in joined
    assert "--metrics" in cmd and "--slots" in cmd


def test_metrics_text_is_read():
    text = ("# HELP llamacpp:requests_processing Number of requests processing.\n"
            "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 3\n"
            "llamacpp:requests_deferred 1\nllamacpp:prompt_tokens_seconds 412.5\n")
    m = parse_metrics(text)
    assert m == {"requests_processing": 3.0, "requests_deferred": 1.0,
                 "prompt_tokens_seconds": 412.5}


def test_the_isa_is_checked_in_the_spec():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="isa"):
        _cpu_cluster(isa="native")


# -- the OpenAI-upstream backend ------------------------------------------------------------

def _upstream(**up):
    base = {"command": ["srv", "-m", "{model}", "--port", "{port}"], "max_batch": 3}
    return cluster(node_type(name="cpu-u", gpu=None, gpus_per_node=None, interconnect=None,
                             cpu={"cores": 1, "memory_gb": 1.0}, backends=["upstream"],
                             precisions=["q4_k_m"], upstream={**base, **up}),
                   model="gemma-3-270m", planner={"min_context": 1024})


def test_upstream_plan_takes_the_declared_precision_and_batch():
    spec = ClusterSpec.model_validate(_upstream())
    c = plan_cluster(spec).node_types[0].choice
    assert (c.backend, c.precision, c.perf.batch) == ("upstream", "q4_k_m", 3)
    assert get_backend("upstream").replica_batch(c) == 3


def test_upstream_with_a_model_file_builds_our_gguf_else_nothing():
    from orchestrator.build.spec import build_specs

    spec = ClusterSpec.model_validate(_upstream())
    (bs,) = build_specs(plan_cluster(spec), spec)
    assert bs.source_kind == "gguf" and bs.params["gguf_type"] == "MOSTLY_Q4_K_M"
    assert "upstream start srv" in bs.describe()
    ext = ClusterSpec.model_validate(_upstream(command=None, url="http://127.0.0.1:11434"))
    (e,) = build_specs(plan_cluster(ext), ext)
    assert e.source_kind == "none" and e.source is None
    assert "at http://127.0.0.1:11434" in e.describe()


def test_upstream_engine_args_fill_the_command(tmp_path):
    import json

    spec = ClusterSpec.model_validate(_upstream())
    n = plan_cluster(spec).node_types[0]
    (tmp_path / "upstream.json").write_text(json.dumps(spec.node_types[0].upstream
                                                       .model_dump()))
    a = get_backend("upstream").engine_args(n, spec.model, tmp_path)
    assert a["command"] == ["srv", "-m", str(tmp_path / "model.gguf"), "--port", "{port}"]
    assert a["max_batch"] == 3 and a["tokenizer_gguf"] is None


@pytest.mark.parametrize("change, words", [
    ({"precisions": None}, "serves one precision"),
    ({"upstream": None}, "has no upstream"),
    ({"precisions": ["awq_int4"]}, "not a GGUF type"),
    ({"backends": ["llamacpp"]}, "no backend in backends fronts one"),
])
def test_upstream_specs_that_cannot_work_are_refused(change, words):
    from pydantic import ValidationError

    data = _upstream()
    nt = data["node_types"][0]
    for k, v in change.items():
        if v is None:
            nt.pop(k)
        else:
            nt[k] = v
    with pytest.raises(ValidationError, match=words):
        ClusterSpec.model_validate(data)


def test_upstream_needs_a_command_or_a_url():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="set command"):
        ClusterSpec.model_validate(_upstream(command=None))
    with pytest.raises(ValidationError, match="no command to start"):
        ClusterSpec.model_validate(_upstream(command=None, url="http://127.0.0.1:{port}"))


def test_a_pulled_artifact_keeps_its_binary_executable(tmp_path):
    """Artifacts move between nodes as bytes through Ray; the manifest says which files
    were executable, and the node that pulls sets the bit again."""
    from orchestrator.build.store import FileEntry, Manifest, restore_modes

    built = tmp_path / "built" / "bin" / "llama-server"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"\x7fELF")
    built.chmod(0o755)
    (tmp_path / "built" / "model.gguf").write_bytes(b"GGUF")
    files = {"bin/llama-server": FileEntry.of(built),
             "model.gguf": FileEntry.of(tmp_path / "built" / "model.gguf")}
    assert files["bin/llama-server"].executable and not files["model.gguf"].executable
    pulled = tmp_path / "pulled" / "bin" / "llama-server"
    pulled.parent.mkdir(parents=True)
    pulled.write_bytes(built.read_bytes())  # as the chunked copy writes it: mode 0644
    pulled.chmod(0o644)
    m = Manifest(key="k", inputs={}, node_type="n", backend="llamaserver", backend_version="1",
                 arch="cpu", precision="q4_k_m", model="gemma-3-270m", files=files,
                 tool_versions={}, built_on="h", built_at=0, build_seconds=0)
    restore_modes(tmp_path / "pulled", m)
    assert os.access(pulled, os.X_OK)
