"""Discover this node's GPUs through NVML and group them into GPU groups.

``discover`` takes the NVML module as an argument (``pynvml`` from nvidia-ml-py by
default), so a recorded box replays through the very same code (``fake_nvml``).
A group is an NVLink clique of one GPU model, or else that model's remaining PCIe peers.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.hardware.catalog import GIB, match_nvml_name, unknown_gpu


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPUInfo(_Data):
    index: int
    name: str  # as NVML reports it
    model_id: str  # catalog id, or unknown-<name>
    known: bool
    memory_bytes: int
    compute_capability: str  # "8.6"
    bus_id: str
    uuid: str
    bandwidth_gbs: float | None  # from bus width and memory clock, when NVML has them
    nvlink_peers: list[int]


class GPUGroup(_Data):
    type: str  # rtx-3090-x2-nvlink: model, size, link
    gpu_model: str
    indices: list[int]
    interconnect: str  # nvlink | pcie

    @property
    def size(self) -> int:
        return len(self.indices)


class Inventory(_Data):
    hostname: str
    cpu_cores: int
    memory_bytes: int
    driver_version: str | None
    cuda_version: str | None
    gpus: list[GPUInfo]
    groups: list[GPUGroup]
    warnings: list[str]
    explanation: str | None  # why the inventory is CPU-only, in one line

    @property
    def cpu_only(self) -> bool:
        return not self.gpus


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _host() -> tuple[str, int, int]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    return socket.gethostname(), os.cpu_count() or 1, mem


def load_nvml():
    import pynvml  # nvidia-ml-py

    return pynvml


def discover(nvml=None) -> Inventory:
    nvml = nvml or load_nvml()
    host, cores, mem = _host()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        return Inventory(hostname=host, cpu_cores=cores, memory_bytes=mem, driver_version=None,
                         cuda_version=None, gpus=[], groups=[], warnings=[],
                         explanation=f"CPU only: NVML unavailable ({e}); no NVIDIA driver or "
                                     "GPU on this machine")
    try:
        return _read(nvml, host, cores, mem)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def _read(nvml, host, cores, mem) -> Inventory:
    driver = _text(nvml.nvmlSystemGetDriverVersion())
    try:
        cv = nvml.nvmlSystemGetCudaDriverVersion_v2()
        cuda = f"{cv // 1000}.{cv % 1000 // 10}"
    except nvml.NVMLError:
        cuda = None
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    warnings: list[str] = []
    links = _nvlink_pairs(nvml, handles)
    gpus = [_gpu(nvml, i, h, links, warnings) for i, h in enumerate(handles)]
    return Inventory(hostname=host, cpu_cores=cores, memory_bytes=mem, driver_version=driver,
                     cuda_version=cuda, gpus=gpus, groups=group_gpus(gpus), warnings=warnings,
                     explanation=None if gpus else "CPU only: the driver reports no GPU")


def _nvlink_pairs(nvml, handles) -> set[tuple[int, int]]:
    # P2P status over NVLink also covers NVSwitch systems, where a GPU's links end at a
    # switch rather than at a peer GPU.
    pairs = set()
    for i, a in enumerate(handles):
        for j in range(i + 1, len(handles)):
            try:
                status = nvml.nvmlDeviceGetP2PStatus(a, handles[j],
                                                     nvml.NVML_P2P_CAPS_INDEX_NVLINK)
            except nvml.NVMLError:
                continue
            if status == nvml.NVML_P2P_STATUS_OK:
                pairs.add((i, j))
    return pairs


def _bandwidth(nvml, h) -> float | None:
    try:
        bus_bits = nvml.nvmlDeviceGetMemoryBusWidth(h)
        clock_mhz = nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM)
    except nvml.NVMLError:
        return None
    # Double data rate: two transfers per reported memory clock.
    return round(bus_bits / 8 * clock_mhz * 1e6 * 2 / 1e9, 1) if bus_bits and clock_mhz else None


def _gpu(nvml, i, h, links, warnings) -> GPUInfo:
    name = _text(nvml.nvmlDeviceGetName(h))
    memory = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
    bandwidth = _bandwidth(nvml, h)
    model = match_nvml_name(name)
    if model is None:
        model = unknown_gpu(name, memory, major * 10 + minor, bandwidth)
        warnings.append(f"GPU {i}: {name!r} is not in the catalog; planning it as "
                        f"{model.id} (sm{major}{minor}, {memory / GIB:.1f} GiB from NVML, "
                        f"{model.bandwidth_gbs:g} GB/s)")
    peers = sorted({b for a, b in links if a == i} | {a for a, b in links if b == i})
    return GPUInfo(index=i, name=name, model_id=model.id, known=not model.id.startswith(
        "unknown"), memory_bytes=memory, compute_capability=f"{major}.{minor}",
        bus_id=_text(nvml.nvmlDeviceGetPciInfo(h).busId),
        uuid=_text(nvml.nvmlDeviceGetUUID(h)), bandwidth_gbs=bandwidth, nvlink_peers=peers)


def group_type(model_id: str, size: int, interconnect: str) -> str:
    return f"{model_id}-x{size}" + ("-nvlink" if interconnect == "nvlink" else "")


def group_gpus(gpus: list[GPUInfo]) -> list[GPUGroup]:
    """NVLink cliques of one model first (greedy, by index); then each model's rest on PCIe."""
    groups: list[GPUGroup] = []
    by_model: dict[str, list[GPUInfo]] = {}
    for g in gpus:
        by_model.setdefault(g.model_id, []).append(g)
    for model_id, members in by_model.items():
        remaining = [g.index for g in members]
        peers = {g.index: set(g.nvlink_peers) for g in members}
        leftovers = []
        while remaining:
            clique = [remaining.pop(0)]
            for j in list(remaining):
                if all(j in peers[k] for k in clique):
                    clique.append(j)
                    remaining.remove(j)
            if len(clique) > 1:
                groups.append(GPUGroup(type=group_type(model_id, len(clique), "nvlink"),
                                       gpu_model=model_id, indices=clique,
                                       interconnect="nvlink"))
            else:
                leftovers += clique
        if leftovers:
            groups.append(GPUGroup(type=group_type(model_id, len(leftovers), "pcie"),
                                   gpu_model=model_id, indices=leftovers, interconnect="pcie"))
    return groups
