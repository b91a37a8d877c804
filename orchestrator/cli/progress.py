"""Progress of the long commands (`build`, `up`). Pure adapters turn what the build runner,
the artifact transfers and `up`'s readiness wait report into task updates; one sink draws
them as rich bars on stderr when it is a terminal, the other as plain lines at a modest
rate when it is not (a CI log, a test), so stdout keeps the command's result alone."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import click

Show = Callable[[list["TaskUpdate"]], None]


@dataclass(frozen=True)
class TaskUpdate:
    """One row of the display: created the first time its key is seen, updated after."""

    key: str
    description: str
    unit: str | None = None  # "bytes": bar, MB, MB/s, time left; "count": bar, M/N
    total: float | None = None  # None: no bar, a spinner and the time elapsed
    completed: float = 0
    finished: bool = False


class BuildEvents:
    """`run_builds`/`distribute` callbacks -> updates: a row per node type's build, one for
    the builds together, and one per node that pulls its node type's artifact."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}  # node type -> what is being built
        self.finished = 0

    def started(self, specs) -> list[TaskUpdate]:
        self.pending = {s.node_type: s.describe() for s in specs}
        return [self._overall()] + [TaskUpdate(f"build:{nt}", f"{nt}: building ({what})")
                                    for nt, what in self.pending.items()]

    def built(self, outcome) -> list[TaskUpdate]:
        self.finished += 1
        nt = outcome.node_type
        if outcome.ok:
            state = (f"cached ({outcome.seconds:.1f} s)" if outcome.cached
                     else f"built in {outcome.seconds:.1f} s")
        else:
            state = "no node of this type yet" if outcome.no_node else \
                f"FAILED: {outcome.error}"
        where = f" on {outcome.host}" if outcome.host else ""
        return [self._overall(),
                TaskUpdate(f"build:{nt}", f"{nt}: {state}{where}", unit="count", total=1,
                           completed=1, finished=True)]

    def moved(self, node_type: str, node: str, done: int, total: int) -> list[TaskUpdate]:
        return [TaskUpdate(f"pull:{node}", f"{node_type}: artifact to node {node[:8]}",
                           unit="bytes", total=total, completed=done,
                           finished=done >= total)]

    def _overall(self) -> TaskUpdate:
        n = len(self.pending)
        return TaskUpdate("builds", f"builds: {self.finished} of {n} done", unit="count",
                          total=n, completed=self.finished, finished=self.finished >= n)


class ReadinessEvents:
    """`wait_ready`'s health bodies -> one row: pools ready of total, which still load and
    their live replicas; and a row per failed pool with its reason."""

    def waited(self, health: object) -> list[TaskUpdate]:
        if isinstance(health, str) and health.startswith("rolling over"):
            return [TaskUpdate("ready", f"{health}: Serve replaces the changed pools")]
        pools = health.get("pools") if isinstance(health, dict) else None
        if not pools:
            return [TaskUpdate("ready", "waiting for the endpoint to answer")]
        ready = [d for d, p in pools.items() if p.get("state") == "ready"]
        loading = [d for d, p in pools.items() if p.get("state") == "loading"]
        failed = {d: p.get("reason") or "failed to load" for d, p in pools.items()
                  if p.get("state") == "failed"}
        replicas = sum(p.get("replicas", 0) for p in pools.values())
        text = f"pools ready: {len(ready)} of {len(pools)}, {replicas} replica(s) up"
        if loading:
            text += f"; loading: {', '.join(loading)}"
        return [TaskUpdate("ready", text, unit="count", total=len(pools),
                           completed=len(ready), finished=len(ready) == len(pools))] + [
            TaskUpdate(f"failed:{d}", f"{d} failed: {why}", finished=True)
            for d, why in failed.items()]

    def ready(self, replicas: dict[str, int]) -> list[TaskUpdate]:
        """The wait's end (its last /health is not reported): every pool that serves."""
        n = len(replicas)
        return [TaskUpdate("ready", f"pools ready: {n} of {n}, {sum(replicas.values())} "
                           "replica(s) up", unit="count", total=n, completed=n,
                           finished=True)]


class RichSink:
    """Applies updates to a rich Progress: a task per key."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, updates: list[TaskUpdate]) -> None:
        for u in updates:
            fields = dict(description=u.description, total=u.total, completed=u.completed,
                          unit=u.unit)
            if u.key not in self.tasks:
                self.tasks[u.key] = self.progress.add_task(**fields)
            else:
                self.progress.update(self.tasks[u.key], **fields)
            if u.finished:
                self.progress.stop_task(self.tasks[u.key])


class LineSink:
    """Plain lines for a log: each new row and each change of words at once, byte counts at
    most every `every_s` seconds per row, with MB/s and the time left."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 every_s: float = 5.0) -> None:
        self.write, self.clock, self.every_s = write, clock, every_s
        self.t0 = clock()
        self.seen: dict[str, tuple[str, float]] = {}  # key -> description, last line's time
        self.first: dict[str, tuple[float, float]] = {}  # key -> time, bytes at first sight

    def __call__(self, updates: list[TaskUpdate]) -> None:
        now = self.clock()
        for u in updates:
            said, at = self.seen.get(u.key, (None, None))
            if u.unit == "bytes":
                self.first.setdefault(u.key, (now, u.completed))
            due = at is None or said != u.description or (
                u.unit == "bytes" and (u.finished or now - at >= self.every_s))
            if not due:
                continue
            self.seen[u.key] = (u.description, now)
            self.write(f"[{now - self.t0:5.0f} s] {u.description}{self._amount(u, now)}")

    def _amount(self, u: TaskUpdate, now: float) -> str:
        if u.unit != "bytes" or not u.total:
            return ""
        t, b = self.first[u.key]
        rate = (u.completed - b) / (now - t) if now > t else 0.0
        left = ("" if u.finished or rate <= 0
                else f", {(u.total - u.completed) / rate:.0f} s left")
        return (f": {u.completed / 1e6:.1f} of {u.total / 1e6:.1f} MB"
                + (f", {rate / 1e6:.1f} MB/s" if rate > 0 else "") + left)


def _columns():
    """Spinner and words for every row; a bar with bytes, MB/s and time left for the
    transfers, a bar with M of N for counted rows; the time elapsed for all."""
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    from rich.text import Text

    def only(unit, column):
        class Only(column):
            def render(self, task):
                return super().render(task) if task.fields.get("unit") in unit else Text("")
        return Only()

    return [SpinnerColumn(finished_text="-"), TextColumn("{task.description}"),
            only(("bytes", "count"), BarColumn), only(("bytes",), DownloadColumn),
            only(("bytes",), TransferSpeedColumn), only(("bytes",), TimeRemainingColumn),
            only(("count",), MofNCompleteColumn), TimeElapsedColumn()]


def bars_wanted(stream=None) -> bool:
    """Rich bars only where a person watches stderr; a log gets lines."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def progress_display(bars: bool | None = None, lines: bool = True) -> Iterator[Show]:
    """A `show(updates)` for the duration: rich bars on stderr, or plain lines there;
    `lines=False` (--json): nothing where stderr is no terminal, for scripts that read both
    streams as one."""
    if not (bars_wanted() if bars is None else bars):
        yield LineSink(lambda line: click.echo(line, err=True)) if lines else (lambda u: None)
        return
    from rich.progress import Progress

    with Progress(*_columns(), console=stderr_console()) as progress:
        yield RichSink(progress)
