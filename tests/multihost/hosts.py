"""Hosts on one machine: a Linux network namespace each, joined by a bridge that lives in a
namespace of its own, on a private subnet that exists only inside these namespaces. Each
host has its own HOME (so its own artifact store, Ray token and orchestrator state) and its
own Ray temp dir; nothing is shared but the network. Everything made is removed by name and
process id, even after a failure: `close()`, and `sweep()` for what a killed run left."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "orchmh"  # every namespace and link this harness makes starts with it
SUBNET = "10.213.0"
BIN = Path(sys.executable).parent  # the virtualenv's orchestrator, ray and python


def available() -> str | None:
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if not shutil.which("ip"):
        return "no `ip` command (iproute2)"
    return None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def _pids(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _kill_ns(ns: str) -> None:
    for _ in range(20):
        pids = _pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def sweep() -> None:
    """Remove what an earlier run of this harness left (a killed pytest)."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(PREFIX):
            _kill_ns(ns)
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/tmp/{ns[:len(PREFIX) + 4]}", ignore_errors=True)


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    root: Path  # HOME lives under it
    ray_dir: Path  # short: Ray's unix socket paths must stay under 108 bytes
    env: dict[str, str] = field(default_factory=dict)
    others: list[Path] = field(default_factory=list)  # hidden from this host

    @property
    def home(self) -> Path:
        return self.root / "home"

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
                "RAY_TMPDIR": str(self.ray_dir), "RAY_USAGE_STATS_ENABLED": "0",
                "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **self.env, **(extra or {})}

    def _argv(self, command: str, extra: dict[str, str] | None) -> list[str]:
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.environment(extra).items())
        # A mount namespace of its own with the other hosts' directories hidden under empty
        # tmpfs: what this host's processes (Ray's included) write or read is its own.
        hide = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in self.others)
        inner = f"{hide + ' && ' if hide else ''}exec env -i {env} bash -c {shlex.quote(command)}"
        return ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation",
                "private", "bash", "-c", inner]

    def run(self, command: str, *, timeout: float = 600, check: bool = True,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """`command` in bash on this host; its output, or AssertionError with it."""
        r = subprocess.run(self._argv(command, extra), capture_output=True, text=True,
                           timeout=timeout, cwd=self.root)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: `{command}` exited {r.returncode}\n"
                                 f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def spawn(self, command: str, log: Path,
              extra: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self._argv(command, extra), stdout=log.open("w"),
                                stderr=subprocess.STDOUT, cwd=self.root,
                                start_new_session=True)

    def stop_all(self) -> None:
        """Every process in this host's namespace (Ray's included), by process id."""
        _kill_ns(self.ns)


class Net:
    """`hosts` hosts on a bridge; `cut(host)` takes a host's link down, `mend` brings it
    back."""

    def __init__(self, names: list[str], root: Path):
        self.tag = uuid.uuid4().hex[:4]
        self.switch = f"{PREFIX}{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self.root = root
        self._made: list[str] = []
        try:
            self._make(names)
        except BaseException:
            self.close()
            raise

    def _link(self, i: int, side: str) -> str:
        return f"{PREFIX}{self.tag}{i}{side}"  # at most 15 characters

    def _make(self, names: list[str]) -> None:
        sh("ip", "netns", "add", self.switch)
        self._made.append(self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(names):
            ns = f"{PREFIX}{self.tag}h{i}"
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            a, b = self._link(i, "a"), self._link(i, "b")
            # made inside the host's namespace, so no link ever appears outside these
            sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b,
               "netns", self.switch)
            sh("ip", "-n", ns, "link", "set", a, "name", "eth0")
            ip = f"{SUBNET}.{i + 1}"
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.switch, "link", "set", b, "master", "br0")
            sh("ip", "-n", self.switch, "link", "set", b, "up")
            host = Host(name, ns, ip, self.root / name, Path(f"/tmp/{PREFIX}{self.tag}/{name}"))
            host.ray_dir.mkdir(parents=True, exist_ok=True)
            host.home.mkdir(parents=True, exist_ok=True)
            self.hosts[name] = host
        self.hide_each_other()

    def hide_each_other(self) -> None:
        for h in self.hosts.values():
            h.others = [o.root for o in self.hosts.values() if o is not h]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def _switch_side(self, host: Host) -> str:
        return self._link(list(self.hosts).index(host.name), "b")

    def cut(self, host: Host) -> None:
        sh("ip", "-n", self.switch, "link", "set", self._switch_side(host), "down")

    def mend(self, host: Host) -> None:
        sh("ip", "-n", self.switch, "link", "set", self._switch_side(host), "up")

    def close(self) -> None:
        for ns in reversed(self._made):
            _kill_ns(ns)
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()
        shutil.rmtree(f"/tmp/{PREFIX}{self.tag}", ignore_errors=True)


def quote(s: str) -> str:
    return shlex.quote(s)
