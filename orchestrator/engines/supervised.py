"""An upstream server that a replica starts and supervises itself (llama-server, an
`upstream` pool's command): its own process group, killed by id when the replica stops,
killed by the kernel when the replica dies, its output in the replica's log, its death a
failed health check."""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

from orchestrator.engines.upstream import UpstreamEngine

log = logging.getLogger("ray.serve")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:  # bound here, not in the child: between fork and exec only the call itself runs
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the process group alone is what stops it
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills the upstream when the replica dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class SupervisedUpstream(UpstreamEngine):
    """An upstream this replica starts itself: `command(port)` is its argv, bound to
    127.0.0.1 on a port picked free here. Its output goes to the replica's log; it runs in
    its own process group, which the replica kills by id when it stops, and the kernel
    kills it if the replica dies first. Its death fails the replica's health check with
    the exit code or signal and its last lines."""

    def __init__(self, command: Callable[[int], list[str]], *, health_path: str = "/v1/models",
                 **kwargs):
        super().__init__("http://127.0.0.1:0", **kwargs)
        self.command, self.health_path = command, health_path
        self.proc: subprocess.Popen | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=40)

    async def start(self) -> None:
        port = free_port()
        self.base_url = self.base_for(port)
        cmd = self.command(port)
        log.info("starting %s", " ".join(cmd))
        # Started from the replica's event-loop thread, which lives as long as the replica:
        # the death signal follows the thread that forked, not the process.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        threading.Thread(target=self._log_output, args=(self.proc,), daemon=True,
                         name=f"upstream-{self.proc.pid}").start()
        try:
            await super().start()
        except BaseException:
            self.terminate()
            raise

    def base_for(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def _log_output(self, proc: subprocess.Popen) -> None:
        name = Path(proc.args[0]).name
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            log.info("%s[%d] %s", name, proc.pid, line)

    def ready_url(self) -> str:
        return self.base_url + self.health_path

    def alive(self) -> str | None:
        if self.proc is None:
            return "the upstream server was stopped"
        rc = self.proc.poll()
        if rc is None:
            return None
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        last = " | ".join(list(self.tail)[-3:])
        return (f"{Path(self.proc.args[0]).name} (pid {self.proc.pid}) died of {how}: "
                f"{last[-400:]}")

    def terminate(self) -> None:
        """Stop the upstream and everything in its process group, by id."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    async def stop(self) -> None:
        await super().stop()
        self.terminate()

    def __del__(self):
        self.terminate()
