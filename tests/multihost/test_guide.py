"""docs/multi-node.md, run: three hosts (a network namespace each, nothing shared but the
network), real llama.cpp pools on two node types, the Q4_K_M artifact built on one worker
and pulled by the other through Ray, requests from a fourth namespace, a token-less client
refused, a host cut off and restored under load, a spec change (the F16 pool to Q4_K_M)
rolled over under load.

The test process itself never joins Ray: every command runs on a host, as the guide says."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CLUSTERS, ROOT
from tests.multihost import hosts

pytestmark = pytest.mark.multihost

GUIDE = ROOT / "docs" / "multi-node.md"
REPORT = os.environ.get("ORCHESTRATOR_MULTIHOST_REPORT")  # benchmarks/multihost.py sets it
SPEC = CLUSTERS / "cpu-3-hosts.yaml"
NODE_TYPES = {"head": "cpu-quality", "w1": "cpu-throughput", "w2": "cpu-throughput",
              "w3": "cpu-late"}  # w3 joins only in the last test
# Ray notices a silent node in seconds rather than its default ~30 s (set on the head only)
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "4"}


def guide_blocks() -> list[tuple[str, list[str]]]:
    """(host role, commands) for every ```sh block of the guide, in order."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S):
        first, *rest = block.strip().splitlines()
        role = first.removeprefix("# host:").strip()
        assert first.startswith("# host:") and role in ("head", "worker", "client"), first
        out.append((role, [c for c in rest if c.strip() and not c.startswith("#")]))
    return out


class Cluster:
    def __init__(self, net: hosts.Net, root: Path):
        self.net, self.root = net, root
        self.head = net["head"]
        self.base = f"http://{self.head.ip}:8000"
        self.blocks = guide_blocks()
        self.outputs: list[str] = []

    def role_hosts(self, role: str) -> list[hosts.Host]:
        return {"head": [self.net["head"]], "worker": [self.net["w1"], self.net["w2"]],
                "client": [self.net["client"]]}[role]

    def run_block(self, i: int, only: hosts.Host | None = None) -> list[str]:
        role, commands = self.blocks[i]
        outs = []
        for h in [only] if only is not None else self.role_hosts(role):
            for c in commands:
                outs.append(h.run(c, timeout=900).stdout)
        self.outputs += outs
        return outs

    def on_client(self, code: str, timeout: float = 300) -> str:
        return self.net["client"].run(f"python -c {hosts.quote(code)}", timeout=timeout).stdout

    def status(self) -> dict:
        r = self.head.run(f"orchestrator status --address {self.head.ip}:6379 --json")
        try:
            return json.loads(r.stdout)
        except ValueError:  # an AssertionError, so that wait() asks again
            raise AssertionError(f"status printed no JSON: {r.stdout[-1500:]} "
                                 f"{r.stderr[-1500:]}") from None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = hosts.available()
    if why:
        pytest.skip(why)
    hosts.sweep()
    root = tmp_path_factory.mktemp("hosts")
    net = hosts.Net(["head", "w1", "w2", "w3", "client"], root)
    try:
        head = net["head"]
        common = {"HEAD_IP": head.ip, "SPEC": str(SPEC)}
        for name, h in net.hosts.items():
            h.env.update(common)
            if name in NODE_TYPES:
                # what an operator's shell on that machine holds after the guide's exports
                h.env.update(NODE_TYPE=NODE_TYPES[name], RAY_AUTH_MODE="token")
        head.env.update(FAST_HEALTH)
        c = Cluster(net, root)
        t0 = time.monotonic()
        c.run_block(0)  # the head: token, ray start
        token = head.run("ray get-auth-token").stdout.strip()
        assert token
        for w in ("w1", "w2", "w3"):
            net[w].env["RAY_AUTH_TOKEN"] = token
        c.run_block(1)  # each worker joins with the token
        c.join_s = time.monotonic() - t0
        t0 = time.monotonic()
        c.build_out, c.up_out, _ = c.run_block(2)  # build, up, status
        c.up_s = time.monotonic() - t0
        c.figures = {"join_s": round(c.join_s, 1), "build_and_up_s": round(c.up_s, 1)}
        yield c
    finally:
        net.close()
        if REPORT and "c" in locals():
            Path(REPORT).write_text(json.dumps(c.figures, indent=2))


def test_a_client_on_another_host_gets_answers(cluster):
    (out,) = cluster.run_block(3)  # the guide's curl, from the client namespace
    assert json.loads(out)["choices"][0]["text"]
    answer = cluster.on_client(
        "from openai import OpenAI\n"
        f"c = OpenAI(base_url='{cluster.base}/v1', api_key='none', max_retries=0)\n"
        "s = c.chat.completions.create(model='gemma-3-270m', max_tokens=8, stream=True,\n"
        "    messages=[{'role': 'user', 'content': 'Hi'}])\n"
        "print(''.join(x.choices[0].delta.content or '' for x in s if x.choices))")
    assert answer.strip()
    pools = cluster.status()["pools"]
    assert {dep: len(p["replicas"]) for dep, p in pools.items()} == {
        "pool-cpu-quality": 1, "pool-cpu-throughput": 2}


def test_the_artifact_was_built_once_and_pulled_by_the_other_worker(cluster):
    row = re.search(r"cpu-throughput\W+\w+\W+pulled\W+\w+\W+([\d.]+)\W+([\d.]+)\W+([\d.]+)",
                    cluster.build_out)
    assert row, cluster.build_out
    cluster.figures["transfer"] = {"mb": float(row[1]), "seconds": float(row[2]),
                                   "mb_per_s": float(row[3])}
    keys, notes = {}, []
    for w in ("w1", "w2"):
        listed = json.loads(cluster.net[w].run("orchestrator artifacts list --json").stdout)
        store = cluster.net[w].home / ".cache/orchestrator/artifacts"
        assert all((store / m["key"]).is_dir() for m in listed)  # its own store, not shared
        keys[w] = {m["key"] for m in listed if m["node_type"] == "cpu-throughput"}
        notes += [n for m in listed for n in m["notes"]]
    assert keys["w1"] == keys["w2"] and len(keys["w1"]) == 1
    # the GGUF source is on the head only (the hosts cannot see each other's files): the
    # worker that built fetched it from there
    assert any(re.match(r"source \S+ fetched from node \w+ through Ray", n) for n in notes), notes
    head_keys = {m["key"] for m in json.loads(
        cluster.head.run("orchestrator artifacts list --json").stdout)}
    assert not head_keys & keys["w1"]  # nothing of the workers' type landed on the head


def test_a_client_without_the_token_is_refused(cluster):
    code = f"import ray; ray.init(address='{cluster.head.ip}:6379')"
    for env in ({}, {"RAY_AUTH_MODE": "token"}):
        r = cluster.net["client"].run(f"timeout 120 python -c {hosts.quote(code)}", check=False,
                                      extra=env, timeout=180)
        assert r.returncode != 0, r.stdout + r.stderr
        assert re.search(r"(?i)auth|token|unauthenticated", r.stdout + r.stderr), r.stderr[-2000:]


class Load:
    def __init__(self, cluster: Cluster, name: str, concurrency: int = 2):
        self.cluster = cluster
        self.stop = cluster.root / f"{name}.stop"
        self.out = cluster.root / f"{name}.jsonl"
        load = Path(__file__).with_name("load.py")
        self.proc = cluster.net["client"].spawn(
            f"python {load} {cluster.base} {self.stop} {self.out} {concurrency}",
            cluster.root / f"{name}.log")

    def results(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.strip()]

    def finish(self) -> list[dict]:
        self.stop.touch()
        self.proc.wait(timeout=400)
        return self.results()


def wait(cond, timeout_s: float, what: str) -> None:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (AssertionError, KeyError) as e:  # the cluster still settling
            last = e
        time.sleep(1.0)
    raise AssertionError(f"not within {timeout_s} s: {what} (last: {last})")


def replicas(cluster: Cluster, dep: str) -> int:
    return len(cluster.status()["pools"][dep]["replicas"])


def test_a_host_cut_off_under_load_loses_nothing_and_its_pool_recovers(cluster):
    w2 = cluster.net["w2"]
    load = Load(cluster, "cut")
    try:
        wait(lambda: len(load.results()) >= 4, 120, "the load is flowing")
        cluster.net.cut(w2)
        cut_at = time.time()
        wait(lambda: replicas(cluster, "pool-cpu-throughput") == 1, 120,
             "the cut-off host's replica leaves the pool")
        served_while_cut = len(load.results())
        wait(lambda: len(load.results()) >= served_while_cut + 4, 120,
             "requests go on being served with the host cut off")
        cluster.net.mend(w2)
        # Ray has declared the host dead, so its raylet exits when it hears again; the
        # operator (or a supervisor) starts Ray there again, as the guide says
        w2.stop_all()
        cluster.run_block(1, only=w2)
        wait(lambda: replicas(cluster, "pool-cpu-throughput") == 2, 300,
             "the pool is back to two replicas")
    finally:
        results = load.finish()
    lost = [r for r in results if r["status"] != 200]
    cluster.figures["cut_off"] = {"requests": len(results), "lost": len(lost),
                                  "served_after_the_cut": sum(r["t"] > cut_at for r in results)}
    assert not lost, lost[:5]
    assert any(r["t"] > cut_at for r in results)


def test_a_changed_spec_rolls_over_while_the_other_pool_serves(cluster, tmp_path):
    spec = yaml.safe_load(SPEC.read_text())
    quality = next(nt for nt in spec["node_types"] if nt["name"] == "cpu-quality")
    quality["precisions"] = ["q4_k_m"]  # the demo model ships F16 and Q4_K_M sources
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(spec))
    load = Load(cluster, "roll")
    try:
        wait(lambda: len(load.results()) >= 4, 120, "the load is flowing")
        t0 = time.monotonic()
        cluster.head.run(f"orchestrator up {changed} --address {cluster.head.ip}:6379 "
                         "--host 0.0.0.0", timeout=900)
        cluster.figures["replan_up_s"] = round(time.monotonic() - t0, 1)
        # `up` returns once Serve has rolled the changed pool over
        assert cluster.status()["pools"]["pool-cpu-quality"]["precision"] == "q4_k_m"
        n = len(load.results())
        wait(lambda: len(load.results()) >= n + 4, 120, "requests go on after the change")
    finally:
        results = load.finish()
    lost = [r for r in results if r["status"] != 200]
    cluster.figures["replan"] = {"requests": len(results), "lost": len(lost)}
    assert not lost, lost[:5]


def test_a_host_of_a_new_node_type_joins_and_its_pool_appears(cluster, tmp_path):
    spec = yaml.safe_load(SPEC.read_text())
    next(nt for nt in spec["node_types"] if nt["name"] == "cpu-quality")["precisions"] = \
        ["q4_k_m"]  # as the test before left it
    spec["node_types"].append({"name": "cpu-late", "precisions": ["f16"], "count": 1,
                               "cpu": {"cores": 1, "memory_gb": 2.0,
                                       "memory_bandwidth_gbs": 16, "peak_tflops": 0.29}})
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump(spec))
    out = cluster.head.run(f"orchestrator up {late} --address {cluster.head.ip}:6379 "
                           "--host 0.0.0.0", timeout=900).stdout
    assert "cpu-late: no node of this type in the cluster yet" in out, out
    assert replicas(cluster, "pool-cpu-late") == 0
    cluster.net["w3"].env["SPEC"] = str(late)  # the spec its operator has
    cluster.run_block(1, only=cluster.net["w3"])  # joins; nothing is deployed again
    wait(lambda: replicas(cluster, "pool-cpu-late") == 1, 300,
         "the new node type's pool has its replica")
    # F16 is served by the new pool alone now
    out = cluster.on_client(
        "from openai import OpenAI\n"
        f"c = OpenAI(base_url='{cluster.base}/v1', api_key='none', max_retries=0)\n"
        "r = c.completions.with_raw_response.create(model='gemma-3-270m:f16', prompt='Hi',\n"
        "    max_tokens=4)\n"
        "print(r.headers.get('x-orchestrator-pool'), r.parse().choices[0].text)")
    assert out.startswith("pool-cpu-late"), out
    listed = json.loads(cluster.net["w3"].run("orchestrator artifacts list --json").stdout)
    assert [m["precision"] for m in listed] == ["f16"]  # built there, on arrival


def test_down_removes_the_service(cluster):
    cluster.run_block(4)
    r = cluster.net["client"].run(f"curl -s -m 5 {cluster.base}/health", check=False)
    assert r.returncode != 0 or "ok" not in r.stdout
