"""Record a box's NVML readings in the fixture format that hardware/fake_nvml.py replays,
through the same calls discovery makes: `orchestrator discover --record FILE` on a real
node gives a fixture of it, and tests/gpu/ checks that a recording replays to the same
inventory as the live discovery."""

from __future__ import annotations

from typing import Any


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _optional(call, *args):
    try:
        return call(*args)
    except Exception:  # NVMLError: not supported on this device or driver
        return None


def record(nvml, description: str = "") -> dict:
    """The fixture of the box ``nvml`` (pynvml, or anything with its calls) reads."""
    nvml.nvmlInit()
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        devices = []
        for h in handles:
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
            devices.append({
                "name": _text(nvml.nvmlDeviceGetName(h)),
                "memory_total": int(nvml.nvmlDeviceGetMemoryInfo(h).total),
                "compute_capability": [int(major), int(minor)],
                "bus_id": _text(nvml.nvmlDeviceGetPciInfo(h).busId),
                "uuid": _text(nvml.nvmlDeviceGetUUID(h)),
                "memory_bus_width": _optional(nvml.nvmlDeviceGetMemoryBusWidth, h),
                "max_memory_clock_mhz": _optional(nvml.nvmlDeviceGetMaxClockInfo, h,
                                                  nvml.NVML_CLOCK_MEM)})
        links = [[i, j] for i in range(count) for j in range(i + 1, count)
                 if _optional(nvml.nvmlDeviceGetP2PStatus, handles[i], handles[j],
                              nvml.NVML_P2P_CAPS_INDEX_NVLINK) == nvml.NVML_P2P_STATUS_OK]
        return {"description": description,
                "driver_version": _text(nvml.nvmlSystemGetDriverVersion()),
                "cuda_driver_version": _optional(nvml.nvmlSystemGetCudaDriverVersion_v2),
                "devices": devices, "nvlink": links}
    finally:
        nvml.nvmlShutdown()
