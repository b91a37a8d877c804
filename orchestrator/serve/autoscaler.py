"""The autoscaling decider wired into Ray Serve as an application-level autoscaling policy:
Serve's controller calls it every control-loop tick with one AutoscalingContext per
deployment and applies the replica counts it returns (placement groups included), so no
control loop of ours competes with Serve's.

Signals: each pool replica's `record_autoscaling_stats` (running, waiting, pinned waiting,
queued prompt tokens, from its engine), and the ingress's (requests it refused with 429
per pool since the last tick: demand that never reached a replica). Decisions and their
reasons go to Ray's internal key-value store for `orchestrator status`; `orchestrator
scale POOL N` writes an override there that this policy applies within the pool's bounds.

The controller deserializes this module by value; everything it needs is imported.
"""

from __future__ import annotations

import json
import logging
import time

from orchestrator.autoscale.policy import (OVERRIDE, Knobs, PolicyState, PoolLoad, PoolSpec,
                                           decide)

log = logging.getLogger("ray.serve")
KV_NAMESPACE = "orchestrator"
OVERRIDE_READ_S = 1.0


def decisions_key(app: str) -> bytes:
    return f"autoscale:{app}:decisions".encode()


def override_key(app: str, deployment: str) -> bytes:
    return f"autoscale:{app}:override:{deployment}".encode()


def _kv():
    # Ray's GCS key-value store: the controller keeps its own checkpoints there.
    from ray.experimental import internal_kv

    return internal_kv


def _sum(ctx, metric: str) -> float:
    values = (ctx.aggregated_metrics or {}).get(metric) or {}
    return float(sum(values.values()))


class ClusterAutoscaler:
    """Called as policy(contexts) -> (decisions, policy_state), both keyed by DeploymentID."""

    def __init__(self, pools: list[dict], knobs: dict, app: str):
        self.specs = [PoolSpec(**p) for p in pools]
        self.knobs = Knobs(**knobs)
        self.app = app
        self.state = PolicyState()
        self.last_published = None
        self.overrides_at = -OVERRIDE_READ_S
        self.cached_overrides: dict[str, int] = {}

    def loads(self, contexts: dict) -> tuple[dict[str, PoolLoad], dict]:
        by_name = {dep.name: (dep, ctx) for dep, ctx in contexts.items()}
        ingress = next((ctx for name, (_, ctx) in by_name.items()
                        if name not in {s.name for s in self.specs}), None)
        loads = {}
        for s in self.specs:
            if s.name not in by_name:
                continue
            _, ctx = by_name[s.name]
            refused = _sum(ingress, f"refused:{s.name}") if ingress else 0.0
            refused_pinned = _sum(ingress, f"refused_pinned:{s.name}") if ingress else 0.0
            loads[s.name] = PoolLoad(
                replicas=ctx.current_num_replicas,
                running=round(_sum(ctx, "running")),
                waiting=round(_sum(ctx, "waiting") + refused),
                waiting_pinned=round(_sum(ctx, "waiting_pinned") + refused_pinned),
                waiting_prefill_tokens=round(_sum(ctx, "waiting_prefill_tokens")))
        return loads, by_name

    def overrides(self) -> dict[str, int]:
        # Serve calls the policy about ten times a second; the store is read once a second
        if time.monotonic() - self.overrides_at < OVERRIDE_READ_S:
            return self.cached_overrides
        self.overrides_at = time.monotonic()
        self.cached_overrides = self._read_overrides()
        return self.cached_overrides

    def _read_overrides(self) -> dict[str, int]:
        out = {}
        for s in self.specs:
            try:
                raw = _kv()._internal_kv_get(override_key(self.app, s.name),
                                             namespace=KV_NAMESPACE)
            except Exception:  # the store is unreachable: decide without overrides
                return {}
            if raw:
                out[s.name] = int(raw)
        return out

    def __call__(self, contexts: dict):
        loads, by_name = self.loads(contexts)
        specs = [s for s in self.specs if s.name in loads]
        first = next(iter(contexts.values()), None)
        now = (first.current_time if first is not None else None) or time.time()
        decisions = {d.pool: d for d in decide(specs, loads, now, self.state, self.knobs)}
        pinned = self.overrides()
        out, published = {}, {}
        for name, (dep, ctx) in by_name.items():
            if name not in decisions:
                out[dep] = ctx.target_num_replicas  # the ingress: left as it is
                continue
            d = decisions[name]
            s = next(x for x in specs if x.name == name)
            # "no change" keeps Serve's target, and a smaller scale-up never lowers a larger
            # one still under way: replicas still starting are not cancelled (the load they
            # were started for wobbles while they start)
            if d.desired == d.current:
                want = ctx.target_num_replicas
            elif d.desired > d.current:
                want = max(d.desired, ctx.target_num_replicas)
            else:
                want = d.desired
            why, cause = d.reason, d.cause
            if name in pinned:
                want = min(max(pinned[name], 0 if s.scale_to_zero else 1), s.max_replicas)
                why = f"manual override {pinned[name]} (orchestrator scale)" + (
                    f", capped at {s.max_replicas}" if pinned[name] > s.max_replicas else "")
                cause = OVERRIDE
            out[dep] = want
            load = loads[name]
            published[name] = {"current": d.current, "desired": want, "min": s.min_replicas,
                               "max": s.max_replicas, "reason": why, "cause": cause,
                               "running": load.running,
                               "waiting": load.waiting,
                               "waiting_prefill_tokens": load.waiting_prefill_tokens}
        self._publish(published, now)
        return out, {dep: {} for dep in contexts}

    def _publish(self, published: dict, now: float) -> None:
        if published == self.last_published:
            return
        changed = {k: v for k, v in published.items()
                   if (self.last_published or {}).get(k, {}).get("desired") != v["desired"]}
        for name, v in changed.items():
            log.info("autoscale %s: %s -> %s (%s)", name, v["current"], v["desired"],
                     v["reason"])
        try:
            _kv()._internal_kv_put(decisions_key(self.app),
                                   json.dumps({"at": now, "pools": published}),
                                   overwrite=True, namespace=KV_NAMESPACE)
            self.last_published = published
        except Exception:  # visibility only; the decision itself stands
            pass
