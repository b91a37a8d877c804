"""Which checkpoint a (precision, backend) starts from, among those the spec names.

Pure. Where the spec names its checkpoints (`artifacts.sources`), a candidate is offered
only if its backend serves that precision from a named format as it is (`Backend.loads`),
or its build quantizes it from a named one that the node type's GPUs hold unquantized
(`Backend.quantizes_from`). Otherwise the rejection says what it needs, what the spec has,
and which backend serves the precision from that. A spec that names none is planned as if
every format were at hand (the build then asks for the one it needs).
"""

from __future__ import annotations

from orchestrator.backends import BACKEND_ORDER, BACKENDS, Backend
from orchestrator.hardware.catalog import GB
from orchestrator.models.catalog import ModelArch
from orchestrator.models.checkpoints import AUXILIARY, CHECKPOINTS
from orchestrator.models.precision import Precision, get_precision
from orchestrator.planner.nodes import NodeHardware


def starting_point(backend: Backend, precision: Precision, named: frozenset[str] | None,
                   hw: NodeHardware, model: ModelArch) -> tuple[str | None, str | None]:
    """(the checkpoint kind the build starts from, None), or (None, why not). (None, None)
    where nothing is checked: the spec names no checkpoint, or the backend serves what it
    is pointed at."""
    if named is None or not backend.checks_checkpoints:
        return None, None
    pid = precision.id
    for kind in backend.loads.get(pid, ()):
        if kind in named:
            return kind, None
    src = backend.quantizes_from.get(pid)
    f16 = get_precision("f16").weight_bytes(model)[0]
    gpu_bytes = 0.0 if hw.is_cpu else hw.gpus * hw.gpu.vram_bytes
    if src in named and f16 <= gpu_bytes:
        return src, None
    return None, _why_not(backend, precision, named, src, f16, gpu_bytes)


def _why_not(backend, precision, named, src, f16, gpu_bytes) -> str:
    pid = precision.id
    ways = [f"{CHECKPOINTS[k]} (artifacts.sources.{k})" for k in backend.loads.get(pid, ())]
    if src:
        where = (f"this node type has {gpu_bytes / GB:.2f} GB" if gpu_bytes
                 else "this node type has no GPU")
        ways.append(f"{CHECKPOINTS[src]} ({src}) quantized at build time on GPUs holding its "
                    f"{f16 / GB:.2f} GB ({where})")
    needs = (" or ".join(ways) if ways
             else f"a checkpoint format it loads for {precision.display}, and it has none")
    have = sorted(named - AUXILIARY)
    if not have:
        return f"needs {needs}; the spec names no model checkpoint"
    hints = []  # a named checkpoint another backend serves this precision from
    for kind in have:
        others = [b for b in (BACKENDS[i] for i in BACKEND_ORDER)
                  if b.id != backend.id and kind in b.loads.get(pid, ())]
        if others:
            hints.append(f"{CHECKPOINTS[kind]} ({kind}), which "
                         + " and ".join(b.loads_as(pid, kind) for b in others))
    if hints:
        return f"needs {needs}; the spec has " + "; ".join(hints)
    return f"needs {needs}; the spec has " + ", ".join(f"{CHECKPOINTS[k]} ({k})" for k in have)
