"""Backends, one module each, in one registry. A new backend is a new module here with a
`Backend` subclass (backends/base.py says what it holds), imported below and added to the
tuple that makes BACKENDS."""

from __future__ import annotations

from orchestrator.backends.base import Backend, BuildSpec, Calibration
from orchestrator.backends.llamacpp import LlamaCpp
from orchestrator.backends.llamaserver import LlamaServer
from orchestrator.backends.simulated import Simulated
from orchestrator.backends.trtllm import Trtllm
from orchestrator.backends.upstream import Upstream
from orchestrator.backends.vllm import Vllm
from orchestrator.errors import UnknownNameError

__all__ = ["BACKENDS", "BACKEND_ORDER", "Backend", "BuildSpec", "Calibration",
           "get_backend", "serving_backend"]

# Order is the preference when the planner's estimates tie.
BACKENDS: dict[str, Backend] = {b.id: b for b in (Trtllm(), Vllm(), LlamaCpp(), LlamaServer(),
                                                  Upstream())}
BACKEND_ORDER = list(BACKENDS)


def get_backend(backend_id: str) -> Backend:
    try:
        return BACKENDS[backend_id]
    except KeyError:
        raise UnknownNameError("backend", backend_id, list(BACKENDS)) from None


def serving_backend(engine: str, time_scale: float = 1.0) -> Backend:
    """What a pool runs: its planned backend, or the simulated engine in its place."""
    if engine == Simulated.id:
        return Simulated(time_scale)
    if engine not in BACKENDS:
        raise UnknownNameError("engine", engine, [*BACKENDS, Simulated.id])
    return BACKENDS[engine]
