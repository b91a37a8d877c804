"""TensorRT-LLM on this GPU with the tiny Llama made in the test: built for this GPU's
architecture by our build (the engine path, or the PyTorch backend's record where the
installed release has no engine path) and served through our engine, greedy."""

import asyncio

import pytest

pytestmark = pytest.mark.gpu


def test_tiny_llama_builds_for_this_gpu_and_serves(gpu, tiny, tmp_path):
    pytest.importorskip("tensorrt_llm", reason="pip install 'orchestrator[trtllm]'")
    from orchestrator.backends.base import BuildSpec
    from orchestrator.backends.trtllm import Trtllm, TrtllmEngine
    from orchestrator.engines.base import GenerateRequest

    _, hw = gpu
    path, _ = tiny
    spec = BuildSpec(node_type="this-gpu", model="tiny-llama", backend="trtllm",
                     precision="f16", arch=hw.gpu.arch, tp=1, resource="gpu_group:this-gpu",
                     gpus=1, source_kind="hf", source=path,
                     params={"dtype": "float16", "quant_algo": None,
                             "kv_cache_quant_algo": None, "max_batch_size": 4,
                             "max_input_len": 1023, "max_seq_len": 1024,
                             "max_num_tokens": 2048, "enable_chunked_context": True,
                             "kv_cache_free_gpu_memory_fraction": 0.5})
    out = tmp_path / "artifact"
    out.mkdir()
    notes = Trtllm().build(spec, out)
    assert notes

    async def go():
        eng = TrtllmEngine(str(out))
        await eng.start()
        try:
            a = [c async for c in eng.generate(GenerateRequest(
                "a", prompt="The capital of France is", max_tokens=8, temperature=0))]
            b = [c async for c in eng.generate(GenerateRequest(
                "b", prompt="The capital of France is", max_tokens=8, temperature=0))]
            return a, b
        finally:
            await eng.stop()

    a, b = asyncio.run(go())
    assert a[-1].completion_tokens == 8
    assert "".join(c.text for c in a) == "".join(c.text for c in b)  # greedy: the same
