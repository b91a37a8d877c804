"""Pool load states from replicas' records, native crash reports, and what `up` reads as a
failed pool."""

import os
import subprocess
import sys

import pytest

from orchestrator.serve import lifecycle, loads
from orchestrator.serve.contract import LoadRecord


def rec(i, state, reason=None, load_s=None):
    return LoadRecord(f"r{i}", 100 + i, state, float(i), load_s, reason)


def test_ready_when_a_replica_is_live():
    s = loads.summary([rec(1, "ready", load_s=2.5)], live=1)
    assert s == {"state": "ready", "reason": None, "last_failure": None, "restarts": 0,
                 "load_s": 2.5}


def test_failed_with_the_reason_and_the_restarts():
    recs = [rec(1, "failed", "bad artifact"), rec(2, "failed", "bad artifact")]
    s = loads.summary(recs, live=0)
    assert s["state"] == "failed" and s["reason"] == "bad artifact" and s["restarts"] == 2


def test_loading_after_a_failure_is_loading():
    s = loads.summary([rec(1, "failed", "oom"), rec(2, "loading")], live=0)
    assert s["state"] == "loading" and s["restarts"] == 1 and s["last_failure"] == "oom"


def test_a_replaced_replica_counts_as_a_restart():
    s = loads.summary([rec(1, "ready", load_s=1), rec(2, "ready", load_s=2)], live=1)
    assert s["state"] == "ready" and s["restarts"] == 1 and s["load_s"] == 2


def test_crash_reason_names_the_signal_and_the_frame():
    report = ("Fatal Python error: Segmentation fault\n\nThread 0x00007f (most recent call "
              "first):\n  File \"/x/llama_cpp/_internals.py\", line 305 in decode\n"
              "  File \"/x/llama.py\", line 9 in eval\n")
    why = loads.crash_reason(report)
    assert why.startswith("engine crash: Segmentation fault (SIGSEGV)")
    assert "_internals.py\", line 305 in decode" in why


def test_a_dead_replicas_crash_report_is_found_once(tmp_path, monkeypatch):
    monkeypatch.setattr(loads, "CRASH_DIR", tmp_path)
    # a real process that dies of SIGSEGV with the fault handler writing where we look
    code = ("import faulthandler, ctypes, sys; fh = open(sys.argv[1], 'w'); "
            "faulthandler.enable(file=fh); ctypes.string_at(0)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "report.tmp")])
    assert proc.wait() < 0
    (tmp_path / "report.tmp").rename(loads.crash_file("app:pool-x", proc.pid))
    loads.crash_file("app:pool-x", os.getpid()).write_text("mine, alive")
    loads.crash_file("other:pool-x", 999999).write_text("another app's pool")
    found = loads.collect_crashes("app:pool-x")
    assert [pid for pid, _ in found] == [proc.pid]
    assert "SIGSEGV" in found[0][1]
    assert loads.collect_crashes("app:pool-x") == []


def test_failed_pools_from_health_and_from_serve_status():
    health = {"pools": {"pool-a": {"state": "failed", "reason": "artifact corrupted"},
                        "pool-b": {"state": "loading"}}}
    serve_st = {"deployments": {"pool-b": {"status": "DEPLOY_FAILED",
                                           "message": "replica died\nmore"},
                                "ingress": {"status": "HEALTHY"}}}
    assert lifecycle.failed_pools(health, serve_st) == {
        "pool-a": "artifact corrupted", "pool-b": "replica died | more"}
    assert lifecycle.failed_pools("connection refused", None) == {}
    # Serve gave up while the last replica was still "loading" when it crashed: the
    # replicas' last recorded failure (a crash found by the next one) is the reason
    health["pools"]["pool-b"]["last_failure"] = "engine crash: Illegal instruction (SIGILL)"
    assert lifecycle.failed_pools(health, serve_st)["pool-b"].startswith("engine crash")


def test_wait_ready_waits_for_a_rollover_and_not_for_pools_without_nodes(monkeypatch):
    """/health ok is not enough while Serve still rolls a changed pool over; a pool whose
    node type has no node yet is not waited for."""
    health = {"status": "degraded", "replicas": {"pool-a": 1, "pool-late": 0}, "pools": {}}
    states = iter([{"status": "RUNNING", "deployed_at": 5.0},  # Serve has not seen it yet
                   {"status": "DEPLOYING", "deployed_at": 9.0,
                    "deployments": {"pool-a": {"status": "UPDATING"}}},
                   {"status": "DEPLOYING", "deployed_at": 9.0, "deployments": {
                       "pool-a": {"status": "HEALTHY"}, "pool-late": {"status": "UPDATING"}}}])
    monkeypatch.setattr(lifecycle, "http_get", lambda *a, **k: (200, health))
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: None)
    seen = []
    got = lifecycle.wait_ready("http://x", 60, seen.append, serve_status_fn=lambda: next(states),
                               waiting={"pool-late"}, deployed_after=5.0)
    assert got is health and len(seen) == 2
    assert seen[0].startswith("rolling over")
    with pytest.raises(lifecycle.OrchestratorError, match="not ready"):
        monkeypatch.setattr(lifecycle.time, "monotonic", iter(range(0, 1000, 100)).__next__)
        lifecycle.wait_ready("http://x", 150,
                             serve_status_fn=lambda: {"status": "RUNNING", "deployed_at": 1})
