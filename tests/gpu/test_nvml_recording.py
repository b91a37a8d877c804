"""NVML discovery on the real device against the fixture format: this box recorded
(hardware/record.py) and replayed (hardware/fake_nvml.py) gives the inventory the live
discovery gives, so fixtures stand for real boxes."""

import json

import pytest

pytestmark = pytest.mark.gpu


def test_this_box_recorded_replays_to_its_live_inventory(gpu, tmp_path):
    from orchestrator.hardware.discovery import discover, load_nvml
    from orchestrator.hardware.fake_nvml import FakeNVML
    from orchestrator.hardware.record import record

    live, _ = gpu
    path = tmp_path / "this-box.json"
    path.write_text(json.dumps(record(load_nvml(), "tests/gpu")))
    replayed = discover(FakeNVML.from_name(str(path)))
    assert replayed == live
    assert all(g.memory_bytes > 0 and g.compute_capability for g in live.gpus)
