"""Overload a live endpoint on purpose: measure what it completes at saturation, offer a
multiple of that open loop for a while, then check it serves normally again. Memory is read
from /proc for the endpoint's Ray processes (ingress, proxy, pool replicas) while it runs.

Used by `benchmarks/overload.py` (long runs, recorded) and by the reliability tests (short).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ERROR_FIELDS = {"message", "type", "param", "code"}


@dataclass
class Outcome:
    status: int  # 0: the connection failed
    latency_s: float
    retry_after: str | None = None
    openai_error: bool = True  # a non-200 answer carried OpenAI's error shape


@dataclass
class Phase:
    name: str
    offered_per_s: float
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(o.status == status for o in self.outcomes)

    def served_per_s(self) -> float:
        return self.count(200) / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict:
        by: dict[int, int] = {}
        for o in self.outcomes:
            by[o.status] = by.get(o.status, 0) + 1
        lat = {s: statistics.median([o.latency_s for o in self.outcomes if o.status == s])
               for s in by}
        return {"phase": self.name, "offered_per_s": round(self.offered_per_s, 3),
                "duration_s": round(self.duration_s, 1), "sent": len(self.outcomes),
                "by_status": {str(k): v for k, v in sorted(by.items())},
                "median_latency_s": {str(k): round(v, 3) for k, v in sorted(lat.items())},
                "served_per_s": round(self.served_per_s(), 3),
                "non_openai_errors": sum(not o.openai_error for o in self.outcomes)}


async def _one(client: aiohttp.ClientSession, url: str, body: dict, headers: dict) -> Outcome:
    t0 = time.monotonic()
    try:
        async with client.post(url, json=body, headers=headers) as r:
            status, retry_after = r.status, r.headers.get("retry-after")
            raw = await r.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return Outcome(0, time.monotonic() - t0, openai_error=False)
    shaped = True
    if status != 200:
        try:
            shaped = set(json.loads(raw).get("error", {})) >= ERROR_FIELDS
        except (ValueError, AttributeError):
            shaped = False
    return Outcome(status, time.monotonic() - t0, retry_after, shaped)


def _session(timeout_s: float, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 connector=aiohttp.TCPConnector(limit=connections))


async def closed_loop(base: str, body: dict, workers: int, duration_s: float,
                      headers: dict | None = None, timeout_s: float = 120) -> Phase:
    """`workers` clients each sending the next request when the last one answers."""
    phase = Phase("saturation (closed loop)", 0.0, duration_s)
    url = f"{base}/v1/completions"
    async with _session(timeout_s, workers) as client:
        t_end = time.monotonic() + duration_s

        async def worker():
            while time.monotonic() < t_end:
                phase.outcomes.append(await _one(client, url, body, headers or {}))

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(workers)))
        phase.duration_s = time.monotonic() - t0
    phase.offered_per_s = len(phase.outcomes) / phase.duration_s
    return phase


async def open_loop(base: str, body: dict, rate: float, duration_s: float,
                    headers: dict | None = None, timeout_s: float = 120,
                    max_in_flight: int = 2000, name: str = "overload (open loop)") -> Phase:
    """Send at a fixed rate whatever happens to earlier requests (how real overload
    arrives); the client caps its own in-flight count so it is not what runs out of memory."""
    phase = Phase(name, rate, duration_s)
    url = f"{base}/v1/completions"
    gate = asyncio.Semaphore(max_in_flight)
    async with _session(timeout_s, max_in_flight) as client:

        async def fire():
            async with gate:
                phase.outcomes.append(await _one(client, url, body, headers or {}))

        tasks = []
        t0 = time.monotonic()
        i = 0
        while (now := time.monotonic()) < t0 + duration_s:
            due = t0 + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(fire()))
            i += 1
        await asyncio.gather(*tasks)
    return phase


async def recovery_s(base: str, body: dict, headers: dict | None = None,
                     timeout_s: float = 120) -> float:
    """Seconds from now until a single request is answered 200."""
    t0 = time.monotonic()
    async with _session(timeout_s, 1) as client:
        while time.monotonic() - t0 < timeout_s:
            if (await _one(client, f"{base}/v1/completions", body, headers or {})).status == 200:
                return time.monotonic() - t0
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} did not answer 200 within {timeout_s} s after the overload")


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process from /proc (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def ray_processes(prefixes=("ray::ServeReplica", "ray::ProxyActor", "ray::ServeController"),
                  ) -> dict[int, str]:
    """Ray worker processes by title (Ray names them ray::<Actor>[:<app>:<deployment>])."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(prefixes):
            out[int(d.name)] = title.split(" ")[0]
    return out


class MemoryWatch:
    """Samples RSS of the given processes every `period_s` while running."""

    def __init__(self, pids: dict[int, str], period_s: float = 0.5):
        self.pids, self.period_s = pids, period_s
        self.first: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._task: asyncio.Task | None = None

    def _sample(self):
        for pid in self.pids:
            v = rss_mb(pid)
            if v is None:
                continue
            self.first.setdefault(pid, v)
            self.peak[pid] = max(self.peak.get(pid, 0.0), v)
            self.last[pid] = v

    async def _run(self):
        while True:
            self._sample()
            await asyncio.sleep(self.period_s)

    def start(self):
        self._sample()
        self._task = asyncio.create_task(self._run())

    async def stop(self):
        if self._task:
            self._task.cancel()
        self._sample()

    def summary(self) -> list[dict]:
        return [{"pid": pid, "process": self.pids[pid], "rss_mb_before": round(self.first[pid], 1),
                 "rss_mb_peak": round(self.peak[pid], 1), "rss_mb_after": round(self.last[pid], 1)}
                for pid in self.pids if pid in self.first]


async def overload_run(base: str, body: dict, *, factor: float = 10.0, workers: int = 8,
                       saturate_s: float = 10.0, overload_s: float = 30.0,
                       headers: dict | None = None, pids: dict[int, str] | None = None,
                       on_phase=lambda name: None) -> dict:
    """Saturate to learn capacity, offer `factor` times it, then check recovery."""
    watch = MemoryWatch(pids if pids is not None else ray_processes())
    watch.start()
    on_phase("saturation")
    sat = await closed_loop(base, body, workers, saturate_s, headers)
    capacity = max(sat.served_per_s(), 0.1)
    on_phase(f"overload at {factor:g}x {capacity:.2f} req/s")
    over = await open_loop(base, body, factor * capacity, overload_s, headers)
    on_phase("recovery")
    rec = await recovery_s(base, body, headers)
    after = await closed_loop(base, body, 1, min(saturate_s, 5.0), headers)
    after.name = "after (closed loop, 1 client)"
    await watch.stop()
    return {"capacity_per_s": round(capacity, 3), "factor": factor,
            "phases": [sat.summary(), over.summary(), after.summary()],
            "recovery_s": round(rec, 2), "memory": watch.summary()}


async def disconnect_storm(base: str, body: dict, clients: int, hold_s: float = 1.0,
                           headers: dict | None = None) -> int:
    """`clients` connections that each send a streaming request and, `hold_s` later, go away
    without reading a byte (most before their first token). Returns how many were sent."""
    host, _, port = base.removeprefix("http://").partition(":")
    raw = json.dumps({**body, "stream": True}).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(raw)}\r\n{extra}\r\n").encode()
    writers = []
    try:
        for _ in range(clients):
            _, writer = await asyncio.open_connection(host, int(port or 80))
            writer.write(head + raw)
            await writer.drain()
            writers.append(writer)
        await asyncio.sleep(hold_s)  # every request reaches the ingress
    finally:
        for writer in writers:
            writer.transport.abort()  # a reset, as a client that vanished sends
    return len(writers)
