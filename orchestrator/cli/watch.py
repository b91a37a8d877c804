"""Refresh a view until Ctrl-C: in place on a terminal (rich Live), frame after frame
where stdout is a log or a pipe, one JSON object per line with --json."""

from __future__ import annotations

import contextlib
import time
from typing import Callable

from rich.console import Console, Group
from rich.text import Text


def watch(fetch: Callable[[], object], render: Callable[[object], object], console: Console,
          *, interval: float, count: int | None = None,
          emit_json: Callable[[object], None] | None = None,
          sleep: Callable[[float], None] = time.sleep,
          now: Callable[[], float] = time.time) -> int:
    """Fetch, draw, wait `interval` s, again: `count` times, or until Ctrl-C, which ends it
    as the user asked (no traceback). Returns the frames drawn."""
    from rich.live import Live

    in_place = console.is_terminal and emit_json is None
    frames = 0
    live = Live(console=console, auto_refresh=False) if in_place else contextlib.nullcontext()
    try:
        with live:
            while True:
                snapshot = fetch()
                if emit_json is not None:
                    emit_json(snapshot)
                else:
                    stamp = Text(f"{time.strftime('%H:%M:%S', time.localtime(now()))}, every "
                                 f"{interval:g} s; Ctrl-C stops", style="dim")
                    frame = Group(render(snapshot), stamp)
                    if in_place:
                        live.update(frame, refresh=True)
                    else:
                        console.print(frame)
                frames += 1
                if count is not None and frames >= count:
                    break
                sleep(interval)
    except KeyboardInterrupt:
        pass
    return frames
