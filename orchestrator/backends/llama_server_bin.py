"""llama.cpp's own `llama-server`, compiled per node type from the llama.cpp sources that
llama-cpp-python's sdist vendors (MIT; tools/server included), at the version
constraints.txt pins, with that node type's flags: CUDA for its GPU architecture where the
node has the toolkit, else a CPU build for one named instruction set (never -march=native:
a binary copied to another node of the type must run there too).

The binary is cached content-addressed by the sdist's sha256, its version and the cmake
flags, so every artifact of a node type (one per precision) reuses one compile."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.errors import BuildFailed, UserError

log = logging.getLogger("ray")

# llama-cpp-python's version is its vendored llama.cpp's: constraints.txt pins it, and
# tests/unit/test_pins.py checks that this names the same one.
SDIST_VERSION = "0.3.16"
SDIST = f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
BINARY = "llama-server"
_AVX2 = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2")
_AVX2_OPTS = ("GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2")
_AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
# The instruction sets a CPU build may name, each with the /proc/cpuinfo flags a node
# needs to run it and the ggml options that turn it on (ggml/CMakeLists.txt).
ISAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sse4.2": (("sse4_2",), ("GGML_SSE42",)),
    "avx2": (_AVX2, _AVX2_OPTS),
    "avx512": (_AVX2 + _AVX512, _AVX2_OPTS + ("GGML_AVX512",)),
    # the int8 dot products and BF16 of Ice Lake, Sapphire Rapids and Zen 4
    "avx512-vnni": (_AVX2 + _AVX512 + ("avx512_vnni", "avx512vbmi", "avx512_bf16"),
                    _AVX2_OPTS + ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_VBMI",
                                  "GGML_AVX512_BF16")),
}
_COMMON = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DBUILD_SHARED_LIBS=OFF",
           "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
           "-DLLAMA_BUILD_SERVER=ON")


def cmake_flags(target: dict) -> list[str]:
    """The cmake options for one build target: {"isa": "avx2"} or {"cuda_arch": "86"}."""
    if "cuda_arch" in target:
        return [*_COMMON, "-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={target['cuda_arch']}"]
    isa = target.get("isa")
    if isa not in ISAS:
        raise UserError(f"llama-server CPU build for instruction set {isa!r}: valid: "
                        f"{', '.join(ISAS)}")
    on = set(ISAS[isa][1])
    every = {o for _, opts in ISAS.values() for o in opts} | {"GGML_AVX512_VBMI",
                                                              "GGML_AVX512_VNNI",
                                                              "GGML_AVX512_BF16",
                                                              "GGML_AVX_VNNI", "GGML_AMX_INT8",
                                                              "GGML_AMX_TILE"}
    return [*_COMMON, *(f"-D{o}={'ON' if o in on else 'OFF'}" for o in sorted(every))]


def describe(target: dict) -> str:
    if "cuda_arch" in target:
        return f"llama-server {SDIST_VERSION} (CUDA sm_{target['cuda_arch']})"
    return f"llama-server {SDIST_VERSION} (CPU, {target.get('isa')})"


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def check_runs_here(target: dict, flags: set[str] | None = None) -> None:
    """A CPU binary for an instruction set this node lacks would die of SIGILL at load."""
    if "cuda_arch" in target:
        if shutil.which("nvcc") is None:
            raise UserError(f"{describe(target)} needs the CUDA toolkit (nvcc) on the build "
                            "node; install it, or plan llama.cpp through llama-cpp-python")
        return
    need = ISAS[target["isa"]][0]
    have = cpu_flags() if flags is None else flags
    missing = [f for f in need if f not in have]
    if have and missing:
        raise UserError(f"{describe(target)}: this node's CPU lacks {', '.join(missing)}; "
                        f"set the node type's cpu.isa to one it has ({', '.join(ISAS)})")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """The pinned sdist, from the cache or through pip (which reads the node's index)."""
    dest = cache / SDIST
    if dest.exists():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", tmp, f"llama-cpp-python=={SDIST_VERSION}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / SDIST
        if r.returncode != 0 or not got.exists():
            raise BuildFailed(f"pip download of llama-cpp-python=={SDIST_VERSION} (sdist) "
                              f"failed: {(r.stderr or r.stdout)[-600:]}")
        got.rename(dest)
    return dest


def binary_key(sdist_digest: str, flags: list[str]) -> str:
    data = json.dumps({"sdist": sdist_digest, "version": SDIST_VERSION, "flags": flags},
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def compile_server(sdist: Path, flags: list[str], dest: Path) -> float:
    """Unpack the sdist, configure and build the llama-server target; copy the binary to
    `dest`. Logs cmake's progress every tenth of the way. Returns the seconds it took."""
    import tarfile

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llama-server-") as work:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
            tar.extractall(work, members=members, filter="data")
        src = next(Path(work).glob("*/vendor/llama.cpp"))
        build = Path(work) / "build"
        _run(["cmake", "-S", str(src), "-B", str(build), *flags], "cmake configure")
        _run(["cmake", "--build", str(build), "--target", BINARY, "-j", str(_jobs())],
             "cmake build", progress=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / BINARY, dest)
    return time.perf_counter() - t0


def _run(cmd: list[str], what: str, progress: bool = False) -> None:
    if shutil.which(cmd[0]) is None:
        raise UserError(f"{cmd[0]} is not installed on the build node; llama-server is "
                        "compiled there (apt-get install cmake g++)")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    shown = -10
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        m = re.match(r"\[\s*(\d+)%\]", line) if progress else None
        if m and int(m.group(1)) >= shown + 10:
            shown = int(m.group(1))
            log.info("llama-server build: %d%%", shown)
    if proc.wait() != 0:
        raise BuildFailed(f"{what} failed (exit {proc.returncode}): " + "\n".join(tail[-12:]))


def server_binary(target: dict, cache: Path) -> tuple[Path, str]:
    """The compiled binary for `target` in `cache` (compiled first where missing), and a
    note for the artifact's manifest."""
    check_runs_here(target)
    flags = cmake_flags(target)
    sdist = fetch_sdist(cache / "sdist")
    key = binary_key(sha256(sdist), flags)
    binary = cache / "llama-server" / key / BINARY
    if binary.exists():
        return binary, f"{describe(target)}: cached binary {key}"
    tmp = binary.with_name(f".{BINARY}-{os.getpid()}")
    seconds = compile_server(sdist, flags, tmp)
    tmp.rename(binary)
    (binary.parent / "build.json").write_text(json.dumps(
        {"flags": flags, "sdist": SDIST, "seconds": round(seconds, 1)}, indent=2))
    return binary, f"{describe(target)}: compiled in {seconds:.0f} s (binary {key})"
