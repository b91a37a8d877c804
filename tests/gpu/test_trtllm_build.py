"""A real TensorRT-LLM build of a small model (needs a GPU, the trtllm extra, and a Hugging
Face checkpoint directory in ORCHESTRATOR_TRTLLM_CHECKPOINT, e.g. a Llama 3.2 1B)."""

import os

import pytest

from orchestrator.build.runner import execute
from orchestrator.build.spec import BuildSpec
from orchestrator.build.store import ArtifactStore
from orchestrator.hardware.discovery import discover

pytestmark = pytest.mark.gpu


def test_real_trtllm_engine_build(tmp_path):
    inv = discover()
    if inv.cpu_only:
        pytest.skip(f"no GPU: {inv.explanation}")
    pytest.importorskip("tensorrt_llm", reason="pip install 'orchestrator[trtllm]'")
    ckpt = os.environ.get("ORCHESTRATOR_TRTLLM_CHECKPOINT")
    if not ckpt:
        pytest.skip("set ORCHESTRATOR_TRTLLM_CHECKPOINT to a small HF checkpoint directory")
    sm = inv.gpus[0].compute_capability.replace(".", "")
    spec = BuildSpec(node_type="gpu-x1", model="small", backend="trtllm", precision="f16",
                     arch=f"sm{sm}", tp=1, resource="gpu_group:gpu-x1", gpus=1,
                     source_kind="hf", source=ckpt,
                     params={"dtype": "float16", "quant_algo": None,
                             "kv_cache_quant_algo": None, "max_batch_size": 4,
                             "max_input_len": 1023, "max_seq_len": 1024,
                             "max_num_tokens": 2048, "enable_chunked_context": True,
                             "kv_cache_free_gpu_memory_fraction": 0.5})
    out = execute(spec, str(tmp_path))
    assert out.ok
    store = ArtifactStore(tmp_path)
    m = store.load(out.key, arch=f"sm{sm}")
    assert m.files and m.backend == "trtllm"
    assert execute(spec, str(tmp_path)).cached
