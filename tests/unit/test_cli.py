import json

import pytest

from tests.conftest import CLUSTERS, cluster, node_type


def test_help_lists_commands(run):
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("discover", "node-resources", "plan"):
        assert cmd in r.output


def test_discover_here_is_cpu_only_or_lists_gpus(run):
    r = run("discover", "--json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["cpu_cores"] >= 1
    assert data["gpus"] or "CPU only" in data["explanation"]


@pytest.mark.parametrize("fixture, types", [
    ("2x3090-nvlink", ["rtx-3090-x2-nvlink"]),
    ("4xa100-sxm", ["a100-80g-sxm-x4-nvlink"]),
    ("8xh100-sxm", ["h100-sxm-x8-nvlink"]),
    ("no-driver", []),
])
def test_discover_fixture_json(run, fixture, types):
    r = run("discover", "--fixture", fixture, "--json")
    assert r.exit_code == 0
    assert [g["type"] for g in json.loads(r.output)["groups"]] == types


def test_discover_table(run):
    r = run("discover", "--fixture", "mixed-pcie")
    assert r.exit_code == 0
    assert "GPU groups" in r.output and "rtx-4090-x2" in r.output
    assert "warning:" in r.output and "RTX 5090" in r.output


def test_node_resources_for_2x3090(run):
    r = run("node-resources", "--fixture", "2x3090-nvlink")
    assert r.exit_code == 0
    assert '--resources={"gpu_group:rtx-3090-x2-nvlink": 1.0}' in r.output
    assert "--num-gpus=2" in r.output
    j = json.loads(run("node-resources", "--fixture", "2x3090-nvlink", "--json").output)
    assert j["resources"] == {"gpu_group:rtx-3090-x2-nvlink": 1.0}


def test_node_resources_cpu_needs_node_type(run):
    r = run("node-resources", "--fixture", "no-driver")
    assert r.exit_code == 1 and "--node-type" in r.output
    r = run("node-resources", "--fixture", "no-driver", "--cluster", CLUSTERS / "local.yaml",
            "--node-type", "cpu-quality")
    assert r.exit_code == 0 and "gpu_group:cpu-quality" in r.output


def test_plan_table_and_explain(run):
    r = run("plan", CLUSTERS / "seed-table.yaml", "--model", "llama-3.1-70b", "--explain")
    assert r.exit_code == 0, r.output
    assert "cannot fit" in r.output and "INT4 AWQ" in r.output and "TP 4" in r.output
    assert "q5_k_m" in r.output and "short by" in r.output


@pytest.mark.parametrize("spec, args", [
    ("mixed.yaml", []), ("mixed.yaml", ["--explain"]),
    ("mixed.yaml", ["--explain", "--min-context", "131072"]),
    ("seed-table.yaml", ["--explain"]), ("local.yaml", ["--explain"])])
def test_plan_fits_100_columns_and_wide_shows_every_column(run, spec, args):
    r = run("plan", CLUSTERS / spec, *args)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "KV room" in r.output and "hardware" not in r.output
    wide = run("plan", CLUSTERS / spec, "--wide", *args)
    assert "hardware" in wide.output and "1-stream tok/s" in wide.output


def test_plan_json_is_the_plan(run):
    r = run("plan", CLUSTERS / "mixed.yaml", "--json")
    data = json.loads(r.output)
    assert [n["choice"]["precision"] for n in data["node_types"]][0] == "f16"
    assert data["node_types"][0]["choice"]["replica_resources"] == {
        "GPU": 4.0, "gpu_group:a100-80g-sxm-x4-nvlink": 1.0}


def test_plan_nothing_fits_exits_nonzero(run, write_spec):
    path = write_spec(cluster(node_type(name="one", gpu="rtx-4090", gpus_per_node=1,
                                        interconnect="pcie")))
    r = run("plan", path)
    assert r.exit_code == 1
    assert "fits on no node type" in r.output and "short by" in r.output


@pytest.mark.parametrize("args, msg", [
    (["--model", "llama-9"], "unknown model 'llama-9'"),
    (["--objective", "cheap"], "unknown planner objective 'cheap'"),
    (["--min-precision", "q3"], "unknown precision 'q3'"),
    (["--min-context", "0"], "Invalid value for '--min-context'"),
])
def test_plan_bad_overrides(run, args, msg):
    r = run("plan", CLUSTERS / "mixed.yaml", *args)
    assert r.exit_code != 0 and msg in r.output


def test_plan_policy_flag_still_works_with_a_deprecation_warning(run):
    r = run("plan", CLUSTERS / "mixed.yaml", "--policy", "throughput", "--json")
    assert r.exit_code == 0, r.output
    assert "--policy is deprecated; use --objective" in r.output
    r = run("plan", CLUSTERS / "mixed.yaml", "--policy", "quality", "--objective", "quality")
    assert r.exit_code != 0 and "give --objective only" in r.output


def test_plan_bad_spec_is_a_clean_error(run, write_spec):
    r = run("plan", write_spec(cluster(node_type(count=0))))
    assert r.exit_code == 1 and "Traceback" not in r.output and ".count" in r.output


def test_simulate_synthetic_json(run):
    r = run("simulate", CLUSTERS / "mixed.yaml", "--synthetic", "poisson", "--rate", "1",
            "--requests", "200", "--policy", "slo_aware", "--policy", "round_robin", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [x["policy"] for x in data["results"]] == ["slo_aware", "round_robin"]
    s = data["results"][0]["summary"]
    assert s["requests"] == 200 and s["completed"] + s["rejected"] == 200


def test_simulate_sweep_table_and_plot(run, tmp_path):
    png = tmp_path / "g.png"
    r = run("simulate", CLUSTERS / "mixed.yaml", "--synthetic", "bursty", "--requests", "200",
            "--policy", "slo_aware", "--sweep", "--plot", png)
    assert r.exit_code == 0, r.output
    assert "goodput" in r.output and "simulated engines" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, msg", [
    ([], "exactly one of --trace FILE or --synthetic"),
    (["--synthetic", "poisson", "--policy", "fastest"], "unknown routing policy 'fastest'"),
    (["--synthetic", "poisson", "--only", "nope"], "--only nope: not a node type"),
    (["--synthetic", "poisson", "--pin-share", "0.5"], "--pin-share needs --pin-precision"),
    (["--trace", "/nonexistent.csv"], "cannot read trace"),
])
def test_simulate_bad_input(run, args, msg):
    r = run("simulate", CLUSTERS / "mixed.yaml", *args)
    assert r.exit_code != 0 and msg in r.output


def test_status_view_shows_each_pools_engine_state_and_the_reason_in_full():
    from rich.console import Console

    from orchestrator.views import status_view

    serve_st = {"status": "RUNNING", "deployments": {
        "pool-a": {"status": "HEALTHY", "replicas": {"RUNNING": 1}},
        "pool-b": {"status": "DEPLOY_FAILED", "replicas": {"STARTING": 1}}}}
    reason = ("artifact k is corrupted: model.gguf: sha256 differs from the manifest; "
              "rebuild it (orchestrator build --force)")
    pools = {"pool-a": {"precision": "f16", "state": "ready", "load_s": 2.4, "restarts": 1,
                        "replicas": []},
             "pool-b": {"precision": "q4_k_m", "state": "failed", "reason": reason,
                        "restarts": 3, "replicas": []}}
    con = Console(width=200, record=True)
    con.print(status_view(serve_st, "http://127.0.0.1:8000", pools))
    out = con.export_text()
    assert "loaded in 2 s" in out and "1 restart(s)" in out and "failed" in out
    assert f"pool-b: {reason}" in out


def test_a_spec_with_the_old_policy_key_plans_and_says_so(run, tmp_path):
    text = (CLUSTERS / "local.yaml").read_text()
    assert "objective:" in text
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("objective:", "policy:"))
    r = run("plan", old, "--json")
    assert r.exit_code == 0, r.output
    assert "policy is deprecated; write" in r.output


def test_discover_records_a_fixture_and_says_why_not_where_nvml_is_missing(run, tmp_path):
    out = tmp_path / "box.json"
    r = run("discover", "--fixture", "4xa100-sxm", "--record", out)
    assert r.exit_code == 0, r.output
    again = run("discover", "--fixture", str(out), "--json")
    assert json.loads(again.output)["groups"] == json.loads(
        run("discover", "--fixture", "4xa100-sxm", "--json").output)["groups"]
    r = run("discover", "--fixture", "no-driver", "--record", tmp_path / "none.json")
    assert r.exit_code == 1 and "--record: NVML cannot be read here" in r.output
