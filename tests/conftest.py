"""Shared spec builders: a valid spec as a dict, changed with **overrides per test."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"


def node_type(**overrides) -> dict:
    base = {"name": "rtx-3090-x2-nvlink", "gpu": "rtx-3090", "gpus_per_node": 2,
            "interconnect": "nvlink", "count": 1}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def cluster(*node_types: dict, **overrides) -> dict:
    base = {"name": "test", "model": "llama-3.1-70b",
            "node_types": list(node_types) or [node_type()]}
    base.update(overrides)
    return copy.deepcopy(base)


@pytest.fixture
def write_spec(tmp_path):
    def write(data: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write
