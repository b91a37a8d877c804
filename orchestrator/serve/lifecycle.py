"""Deploy the application on a Ray cluster, wait for its pools, report its status, scale
it and take it down: every Ray Serve call the CLI needs goes through here."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from orchestrator.errors import OrchestratorError, UserError
from orchestrator.serve.contract import (APP_NAME, AUTOSCALER, ENTRY, INGRESS, POOL_PREFIX,
                                         AppArgs)
from orchestrator.serve.ray_local import connect, stop_detached

STATE = Path(os.environ.get("ORCHESTRATOR_STATE_DIR", Path.home() / ".cache/orchestrator")) \
    / "state.json"


def save_state(data: dict) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(data, indent=2))


def load_state() -> dict:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}


def http_get(url: str, timeout: float = 5.0, key: str | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read().decode(), e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


class PoolFailed(OrchestratorError):
    """A pool could not load its engine; the message names the pool and the reason."""


FAILED_STATUSES = ("DEPLOY_FAILED", "UNHEALTHY")


def failed_pools(health: object, serve_st: dict | None = None) -> dict[str, str]:
    """Pool -> reason, for each pool that failed to load: from the load records /health
    carries, or else from Serve's own status (a replica that died in native code before
    any later replica could report it)."""
    out = {}
    pools = health.get("pools", {}) if isinstance(health, dict) else {}
    for dep, p in pools.items():
        if p.get("state") == "failed":
            out[dep] = p.get("reason") or "failed to load"
    for dep, d in ((serve_st or {}).get("deployments") or {}).items():
        if dep not in out and dep != INGRESS and d.get("status") in FAILED_STATUSES:
            # Serve has given up on the pool: its replicas' own last failure says more
            # than Serve's message (a crashed replica's signal and where)
            msg = (d.get("message") or d["status"]).strip().splitlines()
            out[dep] = pools.get(dep, {}).get("last_failure") or \
                " | ".join(m.strip() for m in msg[:3])[:500]
    if not out and (serve_st or {}).get("status") == "DEPLOY_FAILED":
        # the application itself did not build (serve/entry.py raised)
        msg = (serve_st.get("message") or "").strip().splitlines()
        out[APP_NAME] = " | ".join(m.strip() for m in msg[-3:])[:500] or "DEPLOY_FAILED"
    return out


def wait_ready(base_url: str, timeout_s: float, on_wait=lambda body: None,
               key: str | None = None, serve_status_fn=None,
               waiting: set[str] = frozenset(), deployed_after: float = 0.0,
               generation: str | None = None) -> dict:
    """Until every pool has a loaded replica (/health says ok) and, where Serve's status is
    at hand, the application has finished deploying (an update rolls its changed pools
    over while /health is already ok); PoolFailed as soon as one pool has failed to load,
    naming it and the reason. Pools in `waiting` (no node of their type yet) are not
    waited for. `deployed_after`: Serve's deploy time of the application before this
    deploy, so that its status from before the new config arrived does not count;
    `generation`: the deployment's id, which /health reports once its ingress answers."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = http_get(f"{base_url}/health", key=key)
            healthy = status == 200 and isinstance(body, dict) and all(
                n > 0 for dep, n in body.get("replicas", {"": 0}).items() if dep not in waiting
            ) and (generation is None or body.get("generation") == generation)
            last = body
        except OSError as e:
            last, body, healthy = str(e), None, False
        st = None
        if serve_status_fn is not None:
            try:
                st = serve_status_fn()
            except Exception:
                st = None
        settled = st is not None and (st.get("deployed_at") or 0) > deployed_after and (
            st.get("status") == "RUNNING" or all(
                d.get("status") == "HEALTHY" for dep, d in st.get("deployments", {}).items()
                if dep not in waiting))
        if healthy and (serve_status_fn is None or settled):
            return body  # every pool is up, not just one
        failed = failed_pools(body, st)
        if failed:
            raise PoolFailed("; ".join(f"{dep} failed to load: {why}"
                                       for dep, why in failed.items()))
        on_wait(last if not healthy else f"rolling over: {(st or {}).get('status')}")
        time.sleep(1.0)
    raise OrchestratorError(f"{base_url} not ready after {timeout_s:.0f} s: {last}")


def deploy(args: AppArgs, policy_kwargs: dict | None, host: str, port: int) -> None:
    """Deploy through a Serve config, as `serve deploy` and KubeRay do: the Serve entry point
    builds the application from `args` inside the cluster. With `policy_kwargs` the
    application-level autoscaling policy, which sees every pool at once, is attached."""
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from orchestrator.serve import loads

    loads.clear(APP_NAME)  # an earlier deployment's load records say nothing of this one
    # Several raylets may share one host (emulated clusters): only the head runs a proxy.
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    app = {"name": APP_NAME, "route_prefix": "/", "import_path": ENTRY,
           "args": args.config_args()}
    if policy_kwargs is not None:
        app["autoscaling_policy"] = {"policy_function": AUTOSCALER,
                                     "policy_kwargs": policy_kwargs}
    config = ServeDeploySchema.model_validate({
        "proxy_location": "HeadOnly", "http_options": {"host": host, "port": port},
        "applications": [app]})
    _serve_client().deploy_apps(config)


def _serve_client():
    # Serve's public API deploys a config only from the `serve deploy` command line; the
    # controller client it uses there is what this calls.
    from ray.serve.context import _get_global_client

    return _get_global_client()


def serve_status() -> dict:
    from ray import serve

    st = serve.status()
    app = st.applications.get(APP_NAME)
    if app is None:
        raise UserError("nothing is deployed: run `orchestrator up CLUSTER.yaml`")
    return {"status": _name(app.status), "message": app.message,
            "deployed_at": app.last_deployed_time_s,
            "deployments": {name: {"status": _name(d.status),
                                   "replicas": {str(k): v for k, v in d.replica_states.items()},
                                   "message": d.message}
                            for name, d in app.deployments.items()}}


def _name(enum_or_str) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


def take_down(address: str | None) -> list[str]:
    """Remove the application, and stop the local Ray cluster if `up` started it."""
    from ray import serve

    done = []
    state = load_state()
    try:
        connect(address or state.get("address"))
        serve.shutdown()
        done.append("serve application removed")
    except Exception as e:  # nothing running is fine for `down`
        done.append(f"no serve application to remove ({type(e).__name__})")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if state.get("started_ray") and not address:
        stop_detached()
        done.append("local Ray cluster stopped")
    if STATE.exists():
        STATE.unlink()
    return done


def scale_pool(pool: str, replicas: str) -> str:
    """Pin an autoscaled pool (node type or deployment name) at `replicas` within its
    bounds, or hand it back to the policy with "auto"; what was done, in words."""
    from ray.experimental import internal_kv

    from orchestrator.serve.autoscaler import KV_NAMESPACE, decisions_key, override_key

    deployments = serve_status()["deployments"]
    dep = pool if pool in deployments else f"{POOL_PREFIX}{pool}"
    if dep not in deployments or dep == INGRESS:
        names = [d.removeprefix(POOL_PREFIX) for d in deployments if d != INGRESS]
        raise UserError(f"no pool {pool!r}; pools: {', '.join(names)}")
    raw = internal_kv._internal_kv_get(decisions_key(APP_NAME), namespace=KV_NAMESPACE)
    decided = (json.loads(raw)["pools"] if raw else {}).get(dep)
    if decided is None:
        raise UserError(f"{dep} is not autoscaled, so its replicas are fixed: add an "
                        "`autoscaling:` section to its node type and run `orchestrator up`")
    key = override_key(APP_NAME, dep)
    if replicas == "auto":
        internal_kv._internal_kv_del(key, namespace=KV_NAMESPACE)
        return f"{dep}: back to the autoscaling policy"
    try:
        n = int(replicas)
    except ValueError:
        raise UserError(f"N must be a whole number or 'auto', not {replicas!r}") from None
    if not decided["min"] <= n <= decided["max"]:
        raise UserError(f"{dep} takes {decided['min']} to {decided['max']} replicas (max: "
                        f"the GPU groups of its type in the inventory); {n} is outside")
    internal_kv._internal_kv_put(key, str(n), overwrite=True, namespace=KV_NAMESPACE)
    return (f"{dep}: pinned at {n} replica(s) (was {decided['current']}); "
            f"`orchestrator scale {pool} auto` hands it back")
