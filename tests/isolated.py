"""Run native-engine code in a child process, so that an engine crash (a segfault in
llama.cpp, an abort in a CUDA library) fails the one test with the signal's name instead of
taking pytest down with it."""

from __future__ import annotations

import multiprocessing
import queue
import signal
import time
import traceback

import pytest


def _child(q, fn, args):
    try:
        q.put(("ok", fn(*args)))
    except BaseException as e:  # handed back with its traceback for the test's report
        q.put(("error", (type(e).__name__, str(e), traceback.format_exc())))


def run_isolated(fn, *args, timeout_s: float = 300):
    """fn(*args) in a fresh process (spawn: no inherited threads or native state); its
    return value must pickle. Raises IsolatedError for an exception in the child, and fails
    the test when the child dies of a signal or runs past the timeout."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q, fn, args), daemon=True)
    proc.start()
    status, value = None, None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:  # polled: a child that died sends nothing
            status, value = q.get(timeout=0.2)
            break
        except queue.Empty:
            if not proc.is_alive() and q.empty():
                break
    proc.join(10 if status else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
        if status is None:
            pytest.fail(f"{fn.__name__}: the engine process ran past {timeout_s} s")
    if status is None:
        code = proc.exitcode
        why = (f"died of {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with {code}")
        pytest.fail(f"{fn.__name__}: the engine process {why} (a native crash in the engine; "
                    "see constraints.txt for the tested engine versions)")
    if status == "error":
        raise IsolatedError(*value)
    return value


class IsolatedError(Exception):
    def __init__(self, kind: str, message: str, tb: str):
        self.kind, self.message = kind, message
        super().__init__(f"{kind}: {message}\n--- in the engine process ---\n{tb}")
