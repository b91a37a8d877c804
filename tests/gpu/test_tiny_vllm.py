"""vLLM on this GPU with a tiny Llama made in the test: it serves through our engine, and
the KV cache vLLM allocates is within 10 % of the planner's estimate for this GPU (the
planner's usable fraction, 0.9, is vLLM's default gpu_memory_utilization)."""

import asyncio

import pytest

pytestmark = pytest.mark.gpu


def test_vllm_allocates_what_the_planner_estimates(gpu, tiny):
    pytest.importorskip("vllm", reason="pip install 'orchestrator[vllm]' (the GPU build)")
    from orchestrator.backends.vllm import VllmEngine
    from orchestrator.config import PlannerSpec
    from orchestrator.engines.base import GenerateRequest
    from orchestrator.planner.select import NodeRequest, plan_node

    _, hw = gpu
    path, arch = tiny
    n = plan_node(NodeRequest("this-gpu", hw, precisions=("f16",), backends=("vllm",)), arch,
                  PlannerSpec(min_context=1024))
    assert n.choice is not None, n.shortfall
    planned = n.choice.memory.kv_tokens

    async def go():
        eng = VllmEngine(path, dtype="float16", max_model_len=1024, enforce_eager=True)
        await eng.start()
        try:
            cache = eng.engine.vllm_config.cache_config
            allocated = cache.num_gpu_blocks * cache.block_size
            out = [c async for c in eng.generate(GenerateRequest(
                "g", prompt="The capital of France is", max_tokens=8, temperature=0))]
            return allocated, out[-1]
        finally:
            await eng.stop()

    allocated, last = asyncio.run(go())
    assert last.completion_tokens == 8
    assert abs(allocated - planned) <= 0.10 * planned, (
        f"vLLM allocated {allocated} KV tokens, the planner estimated {planned} "
        f"({n.choice.memory.kv_room_bytes / 1e9:.2f} GB of KV room)")
