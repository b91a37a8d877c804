"""A cluster spec's validation errors in words: the file, the field by node type name, and
the valid fields or choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def format_validation_error(path: Path, err: ValidationError, data: Any) -> str:
    lines = [f"{path}: invalid cluster spec ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = _describe_loc(e["loc"], data)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            valid = _fields_at(e["loc"][:-1])
            msg = f"unknown field {e['loc'][-1]!r}; valid fields: {', '.join(valid)}"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e['input']!r})"
        elif e["type"] not in ("value_error", "missing") and "input" in e:
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _describe_loc(loc: tuple, data: Any) -> str:
    """'node_types[1] (rtx-3090-x2).gpu' rather than 'node_types.1.gpu'."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _fields_at(loc: tuple) -> list[str]:
    from orchestrator.config import (ArtifactsSpec, AutoscalingSpec, ClusterSpec, CPUSpec,
                                     NodeTypeSpec, PlannerSpec, PoolScalingSpec, ServingSpec,
                                     UpstreamSpec)

    model: type[BaseModel] = ClusterSpec
    for part in loc:
        if isinstance(part, int):
            continue
        ann = model.model_fields[part].annotation
        for cand in (NodeTypeSpec, PlannerSpec, CPUSpec, ArtifactsSpec, ServingSpec,
                     AutoscalingSpec, PoolScalingSpec, UpstreamSpec):
            if cand is ann or cand in getattr(ann, "__args__", ()):
                model = cand
                break
    return list(model.model_fields)
