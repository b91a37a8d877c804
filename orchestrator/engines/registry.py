"""Engine registry: the keys are the plan's backend ids plus `simulated`."""

from __future__ import annotations

import importlib

from orchestrator.engines.base import Engine
from orchestrator.errors import UnknownNameError

# Module paths, so vLLM and TensorRT-LLM code loads only where a plan uses them.
_ENGINES = {
    "llamacpp": "orchestrator.engines.llamacpp:LlamaCppEngine",
    "vllm": "orchestrator.engines.vllm:VllmEngine",
    "trtllm": "orchestrator.engines.trtllm:TrtllmEngine",
    "simulated": "orchestrator.engines.simulated:SimulatedEngine",
}


def make(name: str, **kwargs) -> Engine:
    try:
        module, cls = _ENGINES[name].split(":")
    except KeyError:
        raise UnknownNameError("engine", name, list(_ENGINES)) from None
    return getattr(importlib.import_module(module), cls)(**kwargs)
