"""Replay a recorded NVML device table through the functions discovery calls.

Fixtures are JSON files (``fixtures/*.json``, or any path): the readings of one box. The
errors are nvidia-ml-py's own classes, so discovery handles a replayed box exactly as a
real one. ``orchestrator discover --fixture NAME`` uses this to show what a box would give.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pynvml

from orchestrator.errors import UserError

_ERRORS = {
    "driver_not_loaded": pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
    "library_not_found": pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    "no_permission": pynvml.NVML_ERROR_NO_PERMISSION,
}


def fixture_names() -> list[str]:
    root = resources.files("orchestrator.hardware") / "fixtures"
    return sorted(p.name.removesuffix(".json") for p in root.iterdir()
                  if p.name.endswith(".json"))


def load_fixture(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return json.loads(path.read_text())
    root = resources.files("orchestrator.hardware") / "fixtures"
    candidate = root / f"{name_or_path}.json"
    if not candidate.is_file():
        raise UserError(f"no NVML fixture {name_or_path!r}; give a .json path or one of: "
                        f"{', '.join(fixture_names())}")
    return json.loads(candidate.read_text())


class FakeNVML:
    """The subset of pynvml that discovery uses, answering from a fixture."""

    NVMLError = pynvml.NVMLError
    NVML_P2P_CAPS_INDEX_NVLINK = pynvml.NVML_P2P_CAPS_INDEX_NVLINK
    NVML_P2P_STATUS_OK = pynvml.NVML_P2P_STATUS_OK
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM

    def __init__(self, fixture: dict):
        self.fixture = fixture
        self.devices = fixture.get("devices", [])
        self.links = {tuple(sorted(p)) for p in fixture.get("nvlink", [])}
        self.initialized = False

    @classmethod
    def from_name(cls, name_or_path: str) -> "FakeNVML":
        return cls(load_fixture(name_or_path))

    def _check(self):
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self):
        err = self.fixture.get("error")
        if err:
            raise pynvml.NVMLError(_ERRORS[err])
        self.initialized = True

    def nvmlShutdown(self):
        self._check()
        self.initialized = False

    def nvmlSystemGetDriverVersion(self):
        self._check()
        return self.fixture["driver_version"]

    def nvmlSystemGetCudaDriverVersion_v2(self):
        self._check()
        return self.fixture["cuda_driver_version"]

    def nvmlDeviceGetCount(self):
        self._check()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._check()
        if not 0 <= i < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return i

    def _dev(self, h):
        self._check()
        return self.devices[h]

    def nvmlDeviceGetName(self, h):
        return self._dev(h)["name"]

    def nvmlDeviceGetMemoryInfo(self, h):
        total = self._dev(h)["memory_total"]
        return SimpleNamespace(total=total, free=total, used=0)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return tuple(self._dev(h)["compute_capability"])

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._dev(h)["bus_id"].encode())

    def nvmlDeviceGetUUID(self, h):
        return self._dev(h)["uuid"]

    def nvmlDeviceGetMemoryBusWidth(self, h):
        value = self._dev(h).get("memory_bus_width")
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetMaxClockInfo(self, h, clock_type):
        if clock_type != pynvml.NVML_CLOCK_MEM:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        value = self._dev(h).get("max_memory_clock_mhz")
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetP2PStatus(self, a, b, index):
        self._check()
        if index != pynvml.NVML_P2P_CAPS_INDEX_NVLINK:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if (min(a, b), max(a, b)) in self.links:
            return pynvml.NVML_P2P_STATUS_OK
        return pynvml.NVML_P2P_STATUS_NOT_SUPPORTED
