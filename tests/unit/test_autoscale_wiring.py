"""Autoscaling wiring without Ray: bounds from plan and spec, and the Serve policy object
driven by fake AutoscalingContexts (Serve's shape: deployment id with a name, current and
target replicas, aggregated custom metrics per replica)."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from orchestrator.serve import autoscaler
from orchestrator.autoscale.bounds import autoscaled, scaling_config
from orchestrator.autoscale.policy import Knobs
from orchestrator.config import AutoscalingSpec, ClusterSpec, load_cluster_spec
from orchestrator.errors import SpecError
from orchestrator.planner.select import plan_cluster
from tests.conftest import CLUSTERS

A100, R3090 = "a100-80g-sxm-x4-nvlink", "rtx-3090-x2-nvlink"
NAMES = {A100: f"pool-{A100}", R3090: f"pool-{R3090}"}


def spec(count: int | None = None, **scaling) -> ClusterSpec:
    data = load_cluster_spec(CLUSTERS / "mixed.yaml").model_dump(mode="json",
                                                                 exclude_none=True)
    for nt in data["node_types"]:
        if nt["name"] == R3090 and scaling:
            nt["autoscaling"] = scaling
        if nt["name"] == R3090 and count:
            nt.update(count=count, addresses=[])
    return ClusterSpec.model_validate(data)


def test_bounds_default_to_the_inventory():
    s = spec(min_replicas=1)
    scaling, kwargs = scaling_config(plan_cluster(s), s, NAMES, "app")
    assert scaling[NAMES[R3090]] == {"min_replicas": 1, "max_replicas": 2, "initial_replicas": 1}
    assert scaling[NAMES[A100]] == {"min_replicas": 1, "max_replicas": 1, "initial_replicas": 1}
    assert {p["name"] for p in kwargs["pools"]} == set(NAMES.values())
    assert autoscaled(s) and not autoscaled(spec())


def test_max_above_the_inventory_is_refused_with_the_numbers():
    s = spec(max_replicas=5)
    with pytest.raises(SpecError, match="max_replicas 5 exceeds the 2 replica"):
        scaling_config(plan_cluster(s), s, NAMES, "app")


@pytest.mark.parametrize("bad, needle", [
    ({"min_replicas": 0}, "scale_to_zero"),
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas 3 > max_replicas 2")])
def test_bad_bounds_name_the_field(bad, needle):
    with pytest.raises(Exception, match=needle):
        spec(**bad)


class FakeKV:
    def __init__(self):
        self.data = {}

    def _internal_kv_get(self, key, namespace=None):
        return self.data.get(key)

    def _internal_kv_put(self, key, value, overwrite=True, namespace=None):
        self.data[key] = value.encode() if isinstance(value, str) else value


def ctx(name, current, target, now, **metrics):
    return SimpleNamespace(current_num_replicas=current, target_num_replicas=target,
                           current_time=now,
                           aggregated_metrics={k: {"r1": v} for k, v in metrics.items()})


@pytest.fixture
def policy(monkeypatch):
    kv = FakeKV()
    monkeypatch.setattr(autoscaler, "_kv", lambda: kv)
    s = spec(min_replicas=1)
    _, kwargs = scaling_config(plan_cluster(s), s, NAMES, "app")
    kwargs["knobs"] |= {"up_cooldown_s": 0, "down_delay_s": 5}
    return autoscaler.ClusterAutoscaler(**kwargs), kv


@dataclass(frozen=True)
class DeploymentID:  # Serve's is a frozen dataclass too
    name: str
    app_name: str = "app"


def dep(name):
    return DeploymentID(name)


def test_policy_grows_the_pool_with_refused_pinned_demand_and_publishes_why(policy):
    p, kv = policy
    a, r, ing = dep(NAMES[A100]), dep(NAMES[R3090]), dep("ingress")
    contexts = {a: ctx(a.name, 1, 1, 100.0, running=2, waiting=0),
                r: ctx(r.name, 1, 1, 100.0, running=6, waiting=4, waiting_pinned=4),
                ing: ctx("ingress", 1, 1, 100.0, **{f"refused:{r.name}": 10,
                                                    f"refused_pinned:{r.name}": 10})}
    decisions, state = p(contexts)
    assert decisions == {a: 1, r: 2, ing: 1}  # 3090 capped at its 2 GPU groups
    assert set(state) == set(contexts)
    import json
    published = json.loads(kv.data[autoscaler.decisions_key("app")])["pools"]
    assert published[r.name]["desired"] == 2 and published[r.name]["max"] == 2
    assert "capped at 2" in published[r.name]["reason"]


def test_policy_keeps_a_scale_up_in_progress_and_shrinks_after_the_delay(policy):
    p, _ = policy
    a, r = dep(NAMES[A100]), dep(NAMES[R3090])
    idle = lambda t, cur, tgt: {a: ctx(a.name, 1, 1, t), r: ctx(r.name, cur, tgt, t)}  # noqa
    assert p(idle(100.0, 1, 2))[0][r] == 2  # still starting: the target stands
    assert p(idle(101.0, 2, 2))[0][r] == 2  # idle, but not for down_delay_s yet
    assert p(idle(107.0, 2, 2))[0][r] == 1


def test_override_wins_within_bounds(policy):
    p, kv = policy
    a, r = dep(NAMES[A100]), dep(NAMES[R3090])
    kv.data[autoscaler.override_key("app", r.name)] = b"2"
    decisions, _ = p({a: ctx(a.name, 1, 1, 100.0), r: ctx(r.name, 1, 1, 100.0)})
    assert decisions[r] == 2


def test_a_smaller_scale_up_never_cancels_a_larger_one_still_starting(monkeypatch):
    monkeypatch.setattr(autoscaler, "_kv", lambda: FakeKV())
    s = spec(count=4, min_replicas=1)
    _, kwargs = scaling_config(plan_cluster(s), s, NAMES, "app")
    kwargs["knobs"] |= {"up_cooldown_s": 0}
    p = autoscaler.ClusterAutoscaler(**kwargs)
    a, r = dep(NAMES[A100]), dep(NAMES[R3090])
    # 3 replicas are starting (target 3) for load that has since dipped to what 2 would
    # hold: the target stays 3, so Serve stops none of the replicas still starting
    contexts = {a: ctx(a.name, 1, 1, 100.0),
                r: ctx(r.name, 1, 3, 100.0, running=6, waiting=1)}
    assert p(contexts)[0][r] == 3


def test_pools_carry_the_plans_prefill_speed_and_replicas_report_their_backlog(policy):
    p, kv = policy
    a, r = dep(NAMES[A100]), dep(NAMES[R3090])
    spec_a = next(s for s in p.specs if s.name == a.name)
    assert spec_a.prefill_tokens_per_s_per_replica > 1000  # the plan's, for 70B on 4x A100
    # 2 sequences on the A100 pool, and 3 s of prompts queued at its prefill speed
    tokens = 3 * spec_a.prefill_tokens_per_s_per_replica
    loads, _ = p.loads({a: ctx(a.name, 1, 1, 100.0, running=1, waiting=1,
                               waiting_prefill_tokens=tokens),
                        r: ctx(r.name, 1, 1, 100.0)})
    assert loads[a.name].waiting_prefill_tokens == round(tokens)
    import json
    p({a: ctx(a.name, 1, 1, 100.0, running=1, waiting=1, waiting_prefill_tokens=tokens),
       r: ctx(r.name, 1, 1, 100.0)})
    published = json.loads(kv.data[autoscaler.decisions_key("app")])["pools"][a.name]
    assert published["desired"] == 1  # the mixed spec's A100 pool holds one replica
    assert "prefill backlog 3.0 s > 1.0 s" in published["reason"]
    assert published["waiting_prefill_tokens"] == round(tokens)


def test_the_knob_reaches_the_policy_from_the_spec():
    assert Knobs(**AutoscalingSpec().model_dump()).prefill_backlog_s == 1.0
    assert Knobs(**AutoscalingSpec(prefill_backlog_s=0.5).model_dump()).prefill_backlog_s == 0.5
    with pytest.raises(Exception, match="prefill_backlog_s"):
        AutoscalingSpec(prefill_backlog_s=0)
