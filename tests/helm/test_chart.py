"""helm/orchestrator: lint, render for one, two and four node types, and validate every
rendered RayService against KubeRay v1.7.0's schema with unknown fields rejected."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from orchestrator.config import ClusterSpec, load_cluster_spec
from orchestrator.k8s.values import helm_values
from orchestrator.planner.select import plan_cluster
from orchestrator.serve.contract import AppArgs
from tests.conftest import CLUSTERS, ROOT

CHART = ROOT / "helm" / "orchestrator"
SCHEMA = ROOT.parent / "shared" / "kuberay" / "rayservices.v1.schema.json"


def values_for(path) -> dict:
    spec = load_cluster_spec(path) if not isinstance(path, ClusterSpec) else path
    return helm_values(plan_cluster(spec), spec)


def render(helm, values: dict, tmp_path, *extra) -> subprocess.CompletedProcess:
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    return subprocess.run([helm, "template", "t", str(CHART), "-f", str(f), *extra],
                          capture_output=True, text=True)


def docs(out: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(out) if d]


def strict(schema):
    """Reject properties a schema does not declare, wherever it declares properties and
    neither allows extra ones nor preserves unknown fields (what Kubernetes would drop)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip(f"KubeRay schema not found at {SCHEMA}")
    import jsonschema

    return jsonschema.Draft202012Validator(strict(json.loads(SCHEMA.read_text())))


def four_types() -> ClusterSpec:
    spec = load_cluster_spec(CLUSTERS / "seed-table.yaml")
    extra = {"name": "cpu-box", "cpu": {"cores": 8, "memory_gb": 64}, "count": 3,
             "labels": {"kubernetes.io/arch": "amd64"}}
    data = spec.model_dump(exclude_none=True)
    data["model"] = "llama-3.1-8b"  # everything fits, so all four serve
    data["node_types"] = [nt for nt in data["node_types"] if nt["name"] != "rtx-4090-x1"]
    data["node_types"].append(extra)
    return ClusterSpec.model_validate(data)


CASES = {
    "one": lambda: values_for(CLUSTERS / "a100-4x.yaml"),
    "two": lambda: values_for(CLUSTERS / "mixed.yaml"),
    "four": lambda: values_for(four_types()),
}


def test_lint_strict(helm, tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text(yaml.safe_dump(CASES["two"]()))
    out = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(f)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("case, groups", [("one", 1), ("two", 2), ("four", 4)])
def test_render_validates_and_maps_node_types(helm, validator, tmp_path, case, groups):
    values = CASES[case]()
    out = render(helm, values, tmp_path)
    assert out.returncode == 0, out.stderr
    (rs,) = [d for d in docs(out.stdout) if d["kind"] == "RayService"]
    errors = sorted(validator.iter_errors(rs), key=str)
    assert not errors, errors[0].message
    wgs = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert len(wgs) == groups
    for wg, v in zip(wgs, values["workerGroups"]):
        assert wg["groupName"] == v["name"]
        assert wg["rayStartParams"]["num-gpus"] == str(v["gpus"])
        res = json.loads(json.loads(wg["rayStartParams"]["resources"]))
        assert res == {f"gpu_group:{v['name']}": 1}
        pod = wg["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        assert limits.get("nvidia.com/gpu", 0) == v["gpus"]
        assert limits["cpu"] == v["resources"]["limits"]["cpu"]
        assert pod.get("nodeSelector", {}) == v["nodeSelector"]
        assert (wg["minReplicas"], wg["maxReplicas"]) == (v["minReplicas"], v["maxReplicas"])
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    assert app["import_path"] == "orchestrator.serve.entry:app"
    # the chart renders serve/contract.AppArgs back: what the entry point will validate
    args = AppArgs.model_validate(app["args"])
    assert args.plan.model == json.loads(values["plan"])["model"]
    assert args.store == values["artifacts"]["path"] and args.policy == "slo_aware"


def test_misspelt_key_is_caught_by_the_strict_schema(helm, validator, tmp_path):
    out = render(helm, CASES["two"](), tmp_path)
    rs = next(d for d in docs(out.stdout) if d["kind"] == "RayService")
    pod = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    pod["nodeSelecter"] = pod.pop("nodeSelector")
    assert any("nodeSelecter" in e.message for e in validator.iter_errors(rs))


def test_ingress_and_notes(helm, tmp_path):
    values = CASES["two"]()
    values["ingress"] = {"enabled": True, "className": "nginx", "host": "llm.example.test",
                         "annotations": {}}
    out = render(helm, values, tmp_path)
    assert out.returncode == 0, out.stderr
    ing = [d for d in docs(out.stdout) if d["kind"] == "Ingress"][0]
    assert ing["spec"]["rules"][0]["host"] == "llm.example.test"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] \
        == "t-orchestrator-serve"
    # helm renders NOTES.txt only on install (which wants a cluster); render a copy of it as
    # an ordinary template instead, with the same values
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    body = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_copy.tpl").write_text(
        '{{- define "notes.copy" -}}\n' + body + '{{- end -}}\n')
    (chart / "templates" / "notes-copy.yaml").write_text(
        'notes: {{ include "notes.copy" . | quote }}\n')
    f = tmp_path / "values.yaml"
    out = subprocess.run([helm, "template", "t", str(chart), "-f", str(f), "--show-only",
                          "templates/notes-copy.yaml"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    notes = yaml.safe_load(out.stdout)["notes"]
    assert "curl http://llm.example.test/v1/models" in notes
    assert "rtx-3090-x2-nvlink: 2 pod(s), 2 GPU(s) each, awq_int4 on trtllm" in notes
    assert "Ray's token authentication is on" in notes
    values["rayAuth"] = {"mode": "disabled"}
    f.write_text(yaml.safe_dump(values))
    out = subprocess.run([helm, "template", "t", str(chart), "-f", str(f), "--show-only",
                          "templates/notes-copy.yaml"], capture_output=True, text=True)
    assert "WARNING: rayAuth.mode is disabled" in yaml.safe_load(out.stdout)["notes"]


def test_ray_token_auth_is_on_by_default(helm, tmp_path):
    out = render(helm, CASES["two"](), tmp_path)
    assert out.returncode == 0, out.stderr
    (rs,) = [d for d in docs(out.stdout) if d["kind"] == "RayService"]
    assert rs["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}


@pytest.mark.parametrize("mutate, needle", [
    (lambda v: v["workerGroups"][0].update(gpus=-1), "gpus"),
    (lambda v: v["workerGroups"][0].update(replicas=-2), "replicas"),
    (lambda v: v["workerGroups"][0].update(name="Bad_Name"), "name"),
    (lambda v: v["workerGroups"][0].update(nodeSelecter={"a": "b"}), "nodeSelecter"),
    (lambda v: v.update(service={"type": "ClusterIP", "port": 70000}), "port"),
    (lambda v: v.update(plan=""), "values.plan is empty"),
    (lambda v: v.update(workerGroups=[]), "values.workerGroups is empty"),
    (lambda v: v["image"].update(tag=""), "tag"),
])
def test_bad_values_fail_with_a_clear_message(helm, tmp_path, mutate, needle):
    values = CASES["two"]()
    mutate(values)
    out = render(helm, values, tmp_path)
    assert out.returncode != 0
    assert needle in out.stderr, out.stderr


def test_autoscaled_pool_and_api_key_secret_reach_the_rayservice(helm, validator, tmp_path):
    data = load_cluster_spec(CLUSTERS / "mixed.yaml").model_dump(mode="json", exclude_none=True)
    for nt in data["node_types"]:
        if nt["name"] == "rtx-3090-x2-nvlink":
            nt["autoscaling"] = {"min_replicas": 1}
    values = values_for(ClusterSpec.model_validate(data))
    values["apiKeys"] = {"secretName": "orchestrator-keys", "secretKey": "keys"}
    out = render(helm, values, tmp_path)
    assert out.returncode == 0, out.stderr
    rs = next(d for d in docs(out.stdout) if d["kind"] == "RayService")
    validator.validate(rs)
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    assert app["autoscaling_policy"]["policy_function"].endswith(":ClusterAutoscaler")
    assert app["args"]["scaling"]["pool-rtx-3090-x2-nvlink"] == {
        "min_replicas": 1, "max_replicas": 2, "initial_replicas": 1}
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups["rtx-3090-x2-nvlink"]["minReplicas"] == 1
    assert groups["rtx-3090-x2-nvlink"]["maxReplicas"] == 2
    pods = [rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]] + [
        g["template"] for g in groups.values()]
    for pod in pods:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["ORCHESTRATOR_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "orchestrator-keys", "key": "keys"}


def test_grafana_dashboard_configmap_carries_the_sidecar_label_and_the_json(helm, tmp_path):
    values = CASES["two"]()
    out = render(helm, values, tmp_path)
    assert out.returncode == 0, out.stderr
    (cm,) = [d for d in docs(out.stdout) if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "namespace" not in cm["metadata"]  # the release's, unless the value names one
    shipped = (CHART / "dashboards" / "orchestrator.json").read_text()
    assert json.loads(cm["data"]["orchestrator.json"]) == json.loads(shipped)
    assert "{{pool}}" in cm["data"]["orchestrator.json"]  # not taken for a template action

    values["grafanaDashboard"] = {"enabled": True, "namespace": "monitoring",
                                  "labels": {"grafana_dashboard": "orchestrator"},
                                  "annotations": {"grafana_folder": "LLM"}}
    out = render(helm, values, tmp_path)
    (cm,) = [d for d in docs(out.stdout) if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "orchestrator"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "LLM"}

    values["grafanaDashboard"] = {"enabled": False}
    out = render(helm, values, tmp_path)
    assert out.returncode == 0, out.stderr
    assert not [d for d in docs(out.stdout) if d["kind"] == "ConfigMap"]

    values["grafanaDashboard"] = {"enabled": True, "lables": {}}
    out = render(helm, values, tmp_path)
    assert out.returncode != 0 and "lables" in out.stderr
