"""Where each pool stands with its engine loads: loading, ready or failed (with the reason,
the restarts and the load seconds), from the records replicas leave in Ray's key-value
store. `up` waits on it, `/health` and `status` show it.

A replica that crashes in native code leaves no record of its own, so each replica writes
Python's fault handler output to a per-process file; the next replica of the pool on that
node finds the file of its dead predecessor and records the crash (signal and where) as
that predecessor's failure.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import tempfile
from pathlib import Path

from orchestrator.serve.contract import LoadRecord

KV_NAMESPACE = "orchestrator"
CRASH_DIR = Path(tempfile.gettempdir()) / "orchestrator-crashes"


def _kv():
    from ray.experimental import internal_kv

    return internal_kv


def _prefix(app: str, deployment: str = "") -> bytes:
    return f"loads:{app}:{deployment}{':' if deployment else ''}".encode()


def forget(app: str, deployment: str, replica: str) -> None:
    try:
        _kv()._internal_kv_del(_prefix(app, deployment) + replica.encode(),
                               namespace=KV_NAMESPACE)
    except Exception:
        pass


def record(app: str, deployment: str, rec: LoadRecord) -> None:
    try:
        _kv()._internal_kv_put(_prefix(app, deployment) + rec.replica.encode(),
                               json.dumps(dataclasses.asdict(rec)), overwrite=True,
                               namespace=KV_NAMESPACE)
    except Exception:  # visibility only: a load never fails for want of its record
        pass


def records(app: str, deployment: str) -> list[LoadRecord]:
    try:
        kv = _kv()
        keys = kv._internal_kv_list(_prefix(app, deployment), namespace=KV_NAMESPACE)
        raw = [kv._internal_kv_get(k, namespace=KV_NAMESPACE) for k in keys]
    except Exception:
        return []
    out = []
    for r in raw:
        try:
            out.append(LoadRecord(**json.loads(r)))
        except (TypeError, ValueError):
            continue
    return sorted(out, key=lambda r: r.started_at)


def clear(app: str) -> None:
    """Forget the records of an earlier deployment of this application."""
    try:
        _kv()._internal_kv_del(_prefix(app), del_by_prefix=True, namespace=KV_NAMESPACE)
    except Exception:
        pass


def summary(recs: list[LoadRecord], live: int) -> dict:
    """One pool's state from its records and the replicas Serve lists as running."""
    failed = [r for r in recs if r.state == "failed"]
    loading = [r for r in recs if r.state == "loading"]
    ready = [r for r in recs if r.state == "ready"]
    if live:
        state = "ready"
    elif failed and (not loading or failed[-1].started_at >= loading[-1].started_at):
        state = "failed"
    else:
        state = "loading"
    last_ready = ready[-1] if ready else None
    return {"state": state,
            "reason": failed[-1].reason if failed and state != "ready" else None,
            "last_failure": failed[-1].reason if failed else None,
            # replicas stopped on purpose remove their record (Pool.__del__); what else is
            # neither live nor loading failed or died
            "restarts": max(0, len(recs) - live - len(loading)),
            "load_s": round(last_ready.load_s, 1) if last_ready and last_ready.load_s
            else None}


# -- native crashes ------------------------------------------------------------------------

def crash_file(pool: str, pid: int) -> Path:
    """`pool` names the application and the deployment: `app:deployment`."""
    return CRASH_DIR / f"{pool.replace(':', '.')}.{pid}.log"


def watch_crashes(pool: str):
    """Write this process's fatal-signal tracebacks where the next replica looks."""
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    fh = open(crash_file(pool, os.getpid()), "w")
    faulthandler.enable(file=fh, all_threads=True)
    return fh


def collect_crashes(pool: str) -> list[tuple[int, str]]:
    """(pid, reason) for each dead replica of this pool on this node that left a fault
    handler report; each is read once."""
    out = []
    for f in sorted(CRASH_DIR.glob(f"{pool.replace(':', '.')}.*.log")):
        try:
            pid = int(f.name.rsplit(".", 2)[1])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        text = f.read_text(errors="replace").strip()
        f.unlink(missing_ok=True)
        if text:
            out.append((pid, crash_reason(text)))
    return out


def crash_reason(report: str) -> str:
    """'engine crash: Segmentation fault (SIGSEGV) in <innermost frame>' from a report."""
    lines = [ln.strip() for ln in report.splitlines() if ln.strip()]
    head = next((ln.removeprefix("Fatal Python error: ") for ln in lines
                 if ln.startswith("Fatal Python error")), lines[0] if lines else "crash")
    signals = {"Segmentation fault": "SIGSEGV", "Aborted": "SIGABRT",
               "Floating point exception": "SIGFPE", "Bus error": "SIGBUS",
               "Illegal instruction": "SIGILL"}
    sig = next((v for k, v in signals.items() if k in head), None)
    frame = next((ln for ln in lines if ln.startswith("File ")), None)
    return (f"engine crash: {head}" + (f" ({sig})" if sig and sig not in head else "")
            + (f" at {frame}" if frame else ""))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
