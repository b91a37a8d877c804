"""What the CLI prints: --json on every command that prints a table parses as JSON (and
progress stays off stdout), `status --watch` refreshes and stops, progress events become
the right rows, and every table fits 100 columns when piped. No Ray: the commands that
need a cluster are given fakes of the one function each calls."""

import io
import json
import time
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from rich.console import Console

from orchestrator.cli import main
from orchestrator.cli.progress import (BuildEvents, LineSink, ReadinessEvents, RichSink,
                                       TaskUpdate)
from tests.conftest import CLUSTERS


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


# -- fakes of what the serving commands call -------------------------------------------------

SERVE_ST = {"status": "RUNNING", "deployed_at": 1.0, "deployments": {
    "pool-a100-80g-sxm-x4-nvlink": {"status": "HEALTHY", "replicas": {"RUNNING": 2}},
    "pool-rtx-3090-x2-nvlink": {"status": "DEPLOY_FAILED", "replicas": {"STARTING": 1}}}}
REASON = ("artifact 0123456789abcdef is corrupted: model.gguf: sha256 differs from the "
          "manifest; rebuild it (orchestrator build --force)")
LIVE = {"pools": {
    "pool-a100-80g-sxm-x4-nvlink": {
        "precision": "f16", "state": "ready", "load_s": 41.2, "restarts": 1,
        "replicas": [{"node_id": "a" * 56, "waiting": 3, "running": 12,
                      "tokens_per_s": 812.4}] * 2},
    "pool-rtx-3090-x2-nvlink": {"precision": "awq_int4", "state": "failed",
                                "reason": REASON, "restarts": 3, "replicas": []}},
    "autoscaling": {"pools": {"pool-a100-80g-sxm-x4-nvlink": {
        "current": 2, "desired": 3, "min": 1, "max": 4,
        "reason": "queue 3.0 per replica is above the target 2.0 for 30 s: one more"}}}}


def fake_status(code=200):
    from orchestrator.serve.up import Status

    return Status(SERVE_ST, "http://127.0.0.1:8000", LIVE if code == 200 else
                  {"error": "unauthorized"}, code)


@pytest.fixture
def serving(monkeypatch):
    """status, down, scale and up against fakes; `calls` counts status fetches."""
    from orchestrator.cli import serving as cli_serving
    from orchestrator.serve import lifecycle, up

    calls = []

    def service_status(address, url, key):
        calls.append(1)
        return fake_status()

    monkeypatch.setattr(up, "service_status", service_status)
    monkeypatch.setattr(cli_serving, "_sleep", lambda s: None)
    monkeypatch.setattr(lifecycle, "take_down", lambda address: ["serve application removed"])
    monkeypatch.setattr(up, "scale", lambda pool, n, address: f"pool-{pool}: pinned at {n}")

    def bring_up(path, opts, step=None, hooks=None):
        hooks.step("deploying")
        hooks.waiting({"pools": {"pool-a": {"state": "loading", "replicas": 0}}})
        hooks.waiting({"pools": {"pool-a": {"state": "ready", "replicas": 1}}})
        return up.Served("http://127.0.0.1:8000", "llama", {"pool-a": 1}, "secret",
                         ["a warning"], {"pool-a": "F16 on llama.cpp"})

    monkeypatch.setattr(up, "bring_up", bring_up)
    return calls


def _store_with_one_artifact(tmp_path):
    from orchestrator.build.store import ArtifactStore, FileEntry, Manifest

    store = ArtifactStore(tmp_path / "store")
    key = "0123456789abcdef0123456789abcdef"
    tmp = store.new_tmp(key)
    (tmp / "model.gguf").write_bytes(b"weights" * 1000)
    store.commit(tmp, Manifest(
        key=key, inputs={}, node_type="rtx-3090-x2-nvlink", backend="llamaserver",
        backend_version="0.3.16", arch="sm86", precision="q4_k_m", model="llama-3.1-70b",
        files={"model.gguf": FileEntry.of(tmp / "model.gguf")}, tool_versions={},
        built_on="host", built_at=time.time(), build_seconds=1.0))
    return store, key


# -- --json everywhere ---------------------------------------------------------------------

def test_every_table_command_has_json_on_stdout_alone(run, serving, tmp_path, monkeypatch):
    store, key = _store_with_one_artifact(tmp_path)
    s = ["artifacts", "--store", store.root]
    commands = [
        ["discover", "--fixture", "mixed-pcie", "--json"],
        ["node-resources", "--fixture", "2x3090-nvlink", "--json"],
        ["plan", CLUSTERS / "mixed.yaml", "--json"],
        ["simulate", CLUSTERS / "mixed.yaml", "--synthetic", "poisson", "--requests", "50",
         "--policy", "slo_aware", "--json"],
        ["build", CLUSTERS / "mixed.yaml", "--dry-run", "--json"],
        [*s, "list", "--json"], [*s, "verify", "--json"], [*s, "verify", key[:12], "--json"],
        [*s, "gc", "--dry-run", "--json"],
        ["status", "--json"], ["down", "--json"], ["scale", "a100", "2", "--json"],
        ["up", CLUSTERS / "mixed.yaml", "--json"]]
    for args in commands:
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
        json.loads(r.stdout)  # progress lines, if any, went to stderr
    up = json.loads(CliRunner().invoke(main, ["up", str(CLUSTERS / "mixed.yaml"),
                                              "--json"]).stdout)
    assert up["endpoint"] == "http://127.0.0.1:8000/v1" and "secret" not in json.dumps(up)
    verified = json.loads(run(*s, "verify", key[:12], "--json").stdout)
    assert verified == [{"key": key, "ok": True, "problems": []}]


def test_verify_json_names_a_corrupted_artifact_and_still_fails(tmp_path):
    store, key = _store_with_one_artifact(tmp_path)
    (store.path(key) / "model.gguf").write_bytes(b"other")
    r = CliRunner().invoke(main, ["artifacts", "--store", str(store.root), "verify", "--json"])
    assert r.exit_code == 1
    [one] = json.loads(r.stdout)
    assert not one["ok"] and one["problems"]


def test_build_progress_goes_to_stderr_as_lines_and_json_alone_to_stdout(monkeypatch):
    from orchestrator.build import runner

    def build_on(spec, address, specs, store, force, on_update, on_progress, step):
        step("starting a local Ray")
        outcomes = []
        for s in specs:
            o = runner.BuildOutcome(node_type=s.node_type, ok=True, key="k", path="/p",
                                    seconds=2.0, host="h", node_id="n" * 20)
            on_update(o)
            outcomes.append(o)
        on_progress(specs[0].node_type, "b" * 20, 50_000_000, 100_000_000)
        on_progress(specs[0].node_type, "b" * 20, 100_000_000, 100_000_000)
        return outcomes, [runner.Transfer(node_type=specs[0].node_type, node_id="b" * 20,
                                          ok=True, source="n" * 20, bytes=100_000_000,
                                          seconds=2.0)]

    monkeypatch.setattr(runner, "build_on", build_on)
    r = CliRunner().invoke(main, ["build", str(CLUSTERS / "mixed.yaml"), "--json"])
    assert r.exit_code == 0, r.output
    # a script reading both streams as one (CliRunner's output) still gets JSON alone
    assert [o["ok"] for o in json.loads(r.output)["outcomes"]] == [True, True]
    table = CliRunner().invoke(main, ["build", str(CLUSTERS / "mixed.yaml")])
    assert "Builds" in table.stdout and widest(table.stdout) <= 100
    assert "builds: 2 of 2 done" in table.stderr and "artifact to node bbbbbbbb" in table.stderr
    assert "100.0 of 100.0 MB" in table.stderr and "builds:" not in table.stdout


# -- status --watch ------------------------------------------------------------------------

def test_status_watch_renders_twice_and_stops(run, serving):
    r = run("status", "--watch", "--count", "2", "--interval", "0.5")
    assert r.exit_code == 0
    assert r.stdout.count("application: RUNNING") == 2 and len(serving) == 2
    assert "every 0.5 s; Ctrl-C stops" in r.stdout
    assert widest(r.stdout) <= 100
    lines = run("status", "--watch", "--count", "3", "--json").stdout.splitlines()
    assert [json.loads(x)["serve"]["status"] for x in lines] == ["RUNNING"] * 3


def test_status_watch_ctrl_c_exits_zero(run, serving, monkeypatch):
    from orchestrator.cli import serving as cli_serving

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_serving, "_sleep", interrupted)
    r = run("status", "--watch")
    assert r.exit_code == 0 and r.stdout.count("application: RUNNING") == 1


def test_watch_on_a_terminal_redraws_in_place():
    from rich.text import Text

    from orchestrator.cli.watch import watch

    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=100)
    seen = iter(range(10))
    n = watch(lambda: next(seen), lambda i: Text(f"frame {i}"), con, interval=1, count=2,
              sleep=lambda s: None, now=lambda: 0.0)
    assert n == 2 and "frame 0" in out.getvalue() and "frame 1" in out.getvalue()
    assert "\x1b[" in out.getvalue()  # cursor movement: the second frame replaced the first


# -- progress events -> rows ---------------------------------------------------------------

@dataclass
class Spec:
    node_type: str

    def describe(self) -> str:
        return f"quantize {self.node_type}"


def test_build_events_make_a_row_per_build_and_per_pull():
    from orchestrator.build.runner import BuildOutcome

    ev = BuildEvents()
    first = ev.started([Spec("a"), Spec("b")])
    assert [(u.key, u.total) for u in first] == [("builds", 2), ("build:a", None),
                                                  ("build:b", None)]
    overall, row = ev.built(BuildOutcome(node_type="a", ok=True, cached=True, seconds=0.4))
    assert (overall.completed, overall.finished) == (1, False)
    assert row.finished and "a: cached" in row.description
    overall, row = ev.built(BuildOutcome(node_type="b", ok=False, error="OOM"))
    assert overall.finished and overall.description == "builds: 2 of 2 done"
    assert "FAILED: OOM" in row.description
    [pull] = ev.moved("a", "f" * 40, 10, 40)
    assert (pull.key, pull.unit, pull.completed, pull.total, pull.finished) == (
        "pull:" + "f" * 40, "bytes", 10, 40, False)
    assert ev.moved("a", "f" * 40, 40, 40)[0].finished


@pytest.mark.parametrize("health, text, done", [
    ("connection refused", "waiting for the endpoint to answer", None),
    ({"pools": {"p-a": {"state": "ready", "replicas": 1},
                "p-b": {"state": "loading", "replicas": 0}}},
     "pools ready: 1 of 2, 1 replica(s) up; loading: p-b", (1, 2)),
    ({"pools": {"p-a": {"state": "ready", "replicas": 2}}},
     "pools ready: 1 of 1, 2 replica(s) up", (1, 1)),
    ("rolling over: DEPLOYING", "rolling over: DEPLOYING: Serve replaces the changed pools",
     None),
])
def test_readiness_events(health, text, done):
    [u] = ReadinessEvents().waited(health)
    assert u.description == text
    assert (None if u.total is None else (u.completed, u.total)) == done


def test_readiness_ends_with_every_pool_ready():
    [u] = ReadinessEvents().ready({"pool-a": 1, "pool-b": 2})
    assert u.description == "pools ready: 2 of 2, 3 replica(s) up" and u.finished


def test_up_shows_its_progress_as_lines_in_a_log(run, serving):
    r = run("up", CLUSTERS / "mixed.yaml")
    assert r.exit_code == 0
    said = r.stderr.splitlines()
    assert [line.split("] ", 1)[1] for line in said] == [
        "planning...", "deploying", "pools ready: 0 of 1, 0 replica(s) up; loading: pool-a",
        "pools ready: 1 of 1, 1 replica(s) up", "serving"]
    assert "serving llama" in r.stdout and "planning" not in r.stdout


def test_up_that_fails_says_why_on_its_progress_and_exits_1(run, serving, monkeypatch):
    from orchestrator.errors import UserError
    from orchestrator.serve import up

    def bring_up(path, opts, step=None, hooks=None):
        raise UserError("pool-a failed to load: CUDA out of memory. Pools that loaded ...")

    monkeypatch.setattr(up, "bring_up", bring_up)
    r = run("up", CLUSTERS / "mixed.yaml")
    assert r.exit_code == 1 and r.stdout == ""
    assert "gave up: pool-a failed to load: CUDA out of memory" in r.stderr


def test_a_failed_pool_gets_a_row_with_its_reason():
    updates = ReadinessEvents().waited({"pools": {
        "p-a": {"state": "failed", "reason": "CUDA out of memory", "replicas": 0}}})
    assert updates[-1].description == "p-a failed: CUDA out of memory"


def test_rich_sink_keeps_one_task_per_key():
    from rich.progress import Progress

    progress = Progress(disable=True)
    sink = RichSink(progress)
    sink([TaskUpdate("pull:n", "to n", unit="bytes", total=100, completed=10)])
    sink([TaskUpdate("pull:n", "to n", unit="bytes", total=100, completed=100,
                     finished=True)])
    [task] = progress.tasks
    assert (task.completed, task.total, task.fields["unit"]) == (100, 100, "bytes")
    assert task.finished


def test_line_sink_says_changes_at_once_and_bytes_at_a_modest_rate():
    lines, now = [], [0.0]
    sink = LineSink(lines.append, clock=lambda: now[0], every_s=5)

    def pull(done, total=100e6):
        sink([TaskUpdate("pull:n", "to n", unit="bytes", total=total, completed=done,
                         finished=done >= total)])

    sink([TaskUpdate("step", "building")])
    sink([TaskUpdate("step", "building")])  # the same words: said already
    pull(0)
    for t in (1, 2, 3):
        now[0] = t
        pull(t * 10e6)  # within 5 s of the last line: not said
    now[0] = 5
    pull(50e6)
    now[0] = 10
    pull(100e6)
    assert lines[0] == "[    0 s] building" and len(lines) == 4
    assert lines[2] == "[    5 s] to n: 50.0 of 100.0 MB, 10.0 MB/s, 5 s left"
    assert lines[3] == "[   10 s] to n: 100.0 of 100.0 MB, 10.0 MB/s"


# -- every table fits 100 columns when piped -----------------------------------------------

def _views(tmp_path):
    from orchestrator.bench.report import BenchResult, PolicyResult, TraceResult
    from orchestrator.build.runner import BuildOutcome, Transfer
    from orchestrator.build.spec import specs_for_file
    from orchestrator.hardware.discovery import discover
    from orchestrator.hardware.fake_nvml import FakeNVML
    from orchestrator.hardware.resources import node_resources
    from orchestrator import views

    store, _ = _store_with_one_artifact(tmp_path)
    _, specs, _ = specs_for_file(str(CLUSTERS / "mixed.yaml"))
    long = "/models/" + "Llama-3.1-70B-Instruct-W4A16-AWQ-modelopt/" * 3
    outcomes = [BuildOutcome(node_type=s.node_type, ok=i == 0, path=long, seconds=812.3,
                             host="gpu-node-17.cluster.internal", node_id="c" * 56,
                             error=None if i == 0 else "CalledProcessError: " + long * 2)
                for i, s in enumerate(specs)]
    transfers = [Transfer(node_type=specs[0].node_type, node_id="d" * 56, ok=True,
                          source="c" * 56, bytes=140_000_000_000, seconds=1234.5),
                 Transfer(node_type=specs[1].node_type, node_id="e" * 56, ok=False,
                          error="ArtifactError: " + long)]
    seed = BenchResult(mode="seed", url="http://127.0.0.1:8000", model="llama", requests=5,
                       errors=1, error_kinds={"timeout": 1}, prompt_tokens=512,
                       completion_tokens_median=256, ttft_s={"p50": 0.2, "p90": 0.3,
                                                             "p99": 0.4},
                       tpot_s={"p50": 0.02, "p90": 0.03, "p99": 0.04},
                       decode_tok_s_median=45.0, e2e_tok_s_median=40.0,
                       aggregate_tok_s_median=40.0, concurrency=1, runs=5)
    policy = PolicyResult(policy="capacity_least_load", requests=50, errors=0,
                          error_kinds={}, slo_attainment=0.96,
                          ttft_s={"p50": 0.21, "p90": 1.9, "p99": 12.4}, tpot_p50_s=0.041,
                          pools={"pool-a100-80g-sxm-x4-nvlink": 31,
                                 "pool-rtx-3090-x2-nvlink": 19},
                          prompt_tokens_median=300, completion_tokens_median=100)
    trace = TraceResult(url="http://127.0.0.1:8000", model="llama", trace="azure_conv.csv",
                        requests=50, offered_rate_req_s=2.0, token_scale=0.25,
                        words_per_token=0.75, slo_ttft_s=2, slo_tpot_s=0.1,
                        policies=[policy] * 4)
    inv = discover(FakeNVML.from_name("mixed-pcie"))
    return {
        "inventory": views.inventory_view(inv),
        "inventory 8x": views.inventory_view(discover(FakeNVML.from_name("8xh100-sxm"))),
        "resources": views.resources_view(node_resources(
            discover(FakeNVML.from_name("8xh100-sxm")), None, None)),
        "bench": views.bench_view(seed), "trace bench": views.trace_bench_view(trace),
        "build specs": views.build_specs_view(specs, "each node its own; here " + long),
        "builds": views.build_outcomes_view(outcomes),
        "transfers": views.transfers_view(transfers),
        "artifacts": views.artifacts_view(store, store.list()),
        "status": views.status_view(SERVE_ST, "http://127.0.0.1:8000", LIVE["pools"],
                                    LIVE["autoscaling"]),
    }


def test_every_view_fits_100_columns(tmp_path):
    for name, view in _views(tmp_path).items():
        con = Console(width=100, record=True, file=io.StringIO())
        con.print(view)
        assert widest(con.export_text()) <= 100, name


@pytest.mark.parametrize("args", [
    ["discover", "--fixture", "mixed-pcie"], ["discover", "--fixture", "8xh100-sxm"],
    ["node-resources", "--fixture", "8xh100-sxm"],
    ["simulate", CLUSTERS / "mixed.yaml", "--synthetic", "poisson", "--requests", "100"],
    ["simulate", CLUSTERS / "mixed.yaml", "--synthetic", "bursty", "--requests", "100",
     "--policy", "slo_aware", "--sweep"],
    ["build", CLUSTERS / "mixed.yaml", "--dry-run"], ["build", CLUSTERS / "local.yaml",
                                                     "--dry-run"],
    ["status"]])
def test_piped_commands_fit_100_columns(run, serving, args):
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert widest(r.stdout) <= 100, max(r.stdout.splitlines(), key=len)
