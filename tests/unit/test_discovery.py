"""The real discovery code over recorded NVML device tables (FakeNVML)."""

import pytest

from orchestrator.hardware.catalog import GPU_CATALOG, match_nvml_name
from orchestrator.hardware.discovery import discover
from orchestrator.hardware.fake_nvml import FakeNVML, fixture_names
from orchestrator.errors import UserError


def inv(name):
    return discover(FakeNVML.from_name(name))


@pytest.mark.parametrize("fixture, groups", [
    ("2x3090-nvlink", [("rtx-3090-x2-nvlink", [0, 1], "nvlink")]),
    ("4x3090-two-bridges", [("rtx-3090-x2-nvlink", [0, 1], "nvlink"),
                            ("rtx-3090-x2-nvlink", [2, 3], "nvlink")]),
    ("4xa100-sxm", [("a100-80g-sxm-x4-nvlink", [0, 1, 2, 3], "nvlink")]),
    ("8xh100-sxm", [("h100-sxm-x8-nvlink", list(range(8)), "nvlink")]),
    ("mixed-pcie", [("rtx-4090-x2", [0, 1], "pcie"), ("rtx-3090-x1", [2], "pcie"),
                    ("unknown-nvidia-geforce-rtx-5090-x1", [3], "pcie")]),
    ("no-driver", []),
])
def test_groups_per_box(fixture, groups):
    got = [(g.type, g.indices, g.interconnect) for g in inv(fixture).groups]
    assert got == groups


def test_readings_of_a_known_box():
    i = inv("2x3090-nvlink")
    assert (i.driver_version, i.cuda_version) == ("550.54.15", "12.4")
    g = i.gpus[0]
    assert (g.model_id, g.compute_capability, g.nvlink_peers) == ("rtx-3090", "8.6", [1])
    assert g.memory_bytes == 24 * 1024**3
    assert g.bandwidth_gbs == pytest.approx(936, rel=0.01)  # GA102 whitepaper: 936 GB/s
    assert g.bus_id.startswith("00000000:")


def test_unknown_gpu_falls_back_with_a_warning_not_a_crash():
    i = inv("mixed-pcie")
    g = i.gpus[3]
    assert not g.known and g.model_id.startswith("unknown-")
    assert len(i.warnings) == 1 and "RTX 5090" in i.warnings[0] and "sm120" in i.warnings[0]


def test_no_driver_gives_cpu_only_with_one_line_explanation():
    i = inv("no-driver")
    assert i.cpu_only and i.groups == []
    assert "Driver Not Loaded" in i.explanation and "\n" not in i.explanation


def test_this_machine_discovers_without_a_traceback():
    i = discover()
    assert i.cpu_cores >= 1
    if i.cpu_only:
        assert i.explanation


def test_nvml_name_matching_is_exact_about_variants():
    assert match_nvml_name("NVIDIA A100-SXM4-80GB").id == "a100-80g-sxm"
    assert match_nvml_name("NVIDIA A100-SXM4-40GB").id == "a100-40g-sxm"
    assert match_nvml_name("NVIDIA A100 80GB PCIe").id == "a100-80g-pcie"
    assert match_nvml_name("NVIDIA A100-PCIE-40GB").id == "a100-40g-pcie"
    assert match_nvml_name("NVIDIA H100 PCIe").id == "h100-pcie"
    assert match_nvml_name("NVIDIA H100 80GB HBM3").id == "h100-sxm"
    assert match_nvml_name("NVIDIA GeForce RTX 3090 Ti").id == "rtx-3090-ti"
    assert match_nvml_name("NVIDIA GeForce RTX 3090").id == "rtx-3090"
    assert match_nvml_name("NVIDIA A100") is None


def test_catalog_covers_the_common_gpus():
    need = {"rtx-3090", "rtx-3090-ti", "rtx-4090", "rtx-a6000", "rtx-6000-ada", "a10g", "l4",
            "l40s", "t4", "v100-sxm2-32g", "a100-40g-pcie", "a100-40g-sxm", "a100-80g-pcie",
            "a100-80g-sxm", "h100-pcie", "h100-sxm", "h200"}
    assert need <= set(GPU_CATALOG)
    # datasheet rows (docs/sources.md: GPUs)
    assert GPU_CATALOG["rtx-4090"].bandwidth_gbs == 1008 and GPU_CATALOG["rtx-4090"].fp8
    assert not GPU_CATALOG["rtx-3090"].fp8 and GPU_CATALOG["rtx-3090"].int4_kernels
    assert GPU_CATALOG["h200"].bandwidth_gbs == 4800
    assert not GPU_CATALOG["t4"].bf16


def test_fixture_errors_name_the_choices():
    assert "2x3090-nvlink" in fixture_names()
    with pytest.raises(UserError, match="no NVML fixture 'nope'.*2x3090-nvlink"):
        FakeNVML.from_name("nope")


def test_fake_refuses_calls_before_init():
    import pynvml

    fake = FakeNVML.from_name("2x3090-nvlink")
    with pytest.raises(pynvml.NVMLError):
        fake.nvmlDeviceGetCount()


def test_a_recording_replays_to_the_same_inventory(tmp_path):
    """hardware/record.py reads a box through NVML's calls into the fixture format; a
    fixture recorded and replayed gives the inventory the original gives (tests/gpu/ does
    the same on a real device)."""
    import json

    from orchestrator.hardware.discovery import discover
    from orchestrator.hardware.fake_nvml import FakeNVML, fixture_names, load_fixture
    from orchestrator.hardware.record import record

    for name in fixture_names():
        if load_fixture(name).get("error"):
            continue
        table = record(FakeNVML.from_name(name))
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(table))
        assert discover(FakeNVML.from_name(str(path))) == discover(FakeNVML.from_name(name))
