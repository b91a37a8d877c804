"""The GPU checks (docs/builds.md: GPU checks): each skips, with its reason, where its
piece is missing (no NVIDIA GPU, no vLLM, no TensorRT-LLM)."""

import os

import pytest


@pytest.fixture(scope="session")
def gpu():
    """This machine's first GPU as the planner sees it: (inventory, NodeHardware)."""
    from orchestrator.hardware.catalog import get_gpu, unknown_gpu
    from orchestrator.hardware.discovery import discover
    from orchestrator.planner.nodes import NodeHardware

    inv = discover()
    if inv.cpu_only:
        pytest.skip(f"no GPU: {inv.explanation}")
    g = inv.gpus[0]
    major, minor = (int(x) for x in g.compute_capability.split("."))
    model = (get_gpu(g.model_id) if g.known
             else unknown_gpu(g.name, g.memory_bytes, major * 10 + minor, g.bandwidth_gbs))
    return inv, NodeHardware(model, 1, False)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny Llama checkpoint made here (tests/gpu/tiny.py): (directory, ModelArch)."""
    pytest.importorskip("transformers", reason="the vllm or trtllm extra brings transformers")
    from tests.gpu.tiny import make_tiny_llama

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloaded
    return make_tiny_llama(tmp_path_factory.mktemp("tiny"))
