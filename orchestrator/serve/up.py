"""`up` and `status` as functions: plan, start or join Ray, build, deploy and wait, or ask
the running service. The CLI parses, calls one of these and prints what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from orchestrator.backends import serving_backend
from orchestrator.errors import UserError
from orchestrator.serve import auth, lifecycle
from orchestrator.serve.contract import Deferred, app_args, deployment_name

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class UpOptions:
    address: str | None = None  # an existing Ray cluster; None: start a local one
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    public_name: str | None = None
    policy: str | None = None  # routing policy
    simulated_engines: bool = False
    timeout_s: float = 600.0
    api_keys_file: str | None = None


@dataclass(frozen=True)
class Served:
    base: str  # http://host:port, reachable from this machine
    model: str  # the public model name
    replicas: dict[str, int]  # deployment -> live replicas
    key: str | None  # the first API key, for a sample request
    warnings: list[str] = field(default_factory=list)
    engines: dict[str, str] = field(default_factory=dict)  # deployment -> what it runs


@dataclass(frozen=True)
class UpHooks:
    """What `bring_up` tells its caller as it goes; each defaults to nothing."""

    step: Callable[[str], None] = lambda line: None  # each phase, in words
    building: Callable[[list], None] = lambda specs: None  # the builds about to run
    built: Callable[[object], None] = lambda outcome: None  # each BuildOutcome
    moved: Callable[[str, str, int, int], None] = lambda *a: None  # node type, node, done, all
    waiting: Callable[[object], None] | None = None  # each /health body; None: step a line


def endpoint(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


def bring_up(cluster_path: str | Path, opts: UpOptions,
             step: Callable[[str], None] = lambda line: None,
             hooks: UpHooks | None = None) -> Served:
    """Plan the spec, start a local Ray (or join `opts.address`), build what the backends
    need, deploy, and wait until every pool has a loaded replica. `step` hears what is
    happening, one line at a time; `hooks`, where given, hear it all (and replace `step`)."""
    from orchestrator.build.runner import (distribute, origin_of, require_built,
                                           require_transferred, run_builds)
    from orchestrator.build.spec import build_specs, shared_store
    from orchestrator.planner.from_file import plan_file
    from orchestrator.router.policies import make as make_policy
    from orchestrator.serve import ray_local

    hooks = hooks or UpHooks(step=step)
    step = hooks.step

    if opts.policy:
        make_policy(opts.policy)  # a bad name fails before anything starts
    spec, plan = plan_file(cluster_path, model=opts.model)
    keys = auth.load_keys(spec.serving.api_keys_env,
                          opts.api_keys_file or spec.serving.api_keys_file)
    warnings = [f"{n.node_type} serves nothing: no precision fits it (orchestrator plan "
                f"{cluster_path} --explain says why)" for n in plan.node_types
                if n.choice is None]
    if not keys and opts.host not in LOCAL_HOSTS:
        warnings.append(f"{opts.host}:{opts.port} is reachable from other machines and no API "
                        f"key is set (set {spec.serving.api_keys_env or 'serving.api_keys_file'})")
    if not opts.address:
        step(f"starting a local Ray cluster for {spec.name!r}")
        ray_local.start_detached(ray_local.local_node(spec))
    lifecycle.save_state({"address": opts.address, "started_ray": not opts.address,
                          "host": opts.host, "port": opts.port, "cluster": str(cluster_path),
                          # where the keys are, never the keys: `status` reads them again
                          "api_keys_env": spec.serving.api_keys_env,
                          "api_keys_file": opts.api_keys_file or spec.serving.api_keys_file})
    ray_local.connect(opts.address)
    artifacts, store, deferred = {}, shared_store(spec), {}
    if not opts.simulated_engines:
        step("building artifacts (cached after the first time)...")
        specs = build_specs(plan, spec)
        hooks.building(specs)
        outcomes = run_builds(specs, store, on_update=hooks.built)
        # A node type with no node yet is no failure: its pool waits for one, whose first
        # replica builds the artifact there
        for s, o in zip(specs, outcomes):
            if o.no_node:
                deferred[s.node_type] = Deferred(build=s, origin=origin_of(s))
                warnings.append(f"{s.node_type}: no node of this type in the cluster yet; "
                                "its pool waits for one and builds its artifact there")
        require_built([o for o in outcomes if not o.no_node])
        step("every node of each type gets its artifact...")
        require_transferred(distribute(specs, outcomes, store, hooks.moved))
        artifacts = {o.node_type: o.key for o in outcomes if o.ok}
    args, policy_kwargs = app_args(
        plan, spec, model_name=opts.public_name, artifacts=artifacts, store=store,
        engine="simulated" if opts.simulated_engines else None, policy=opts.policy,
        key_digests=[auth.digest(k) for k in keys], deferred=deferred)
    step("deploying: each pool verifies its artifact and loads its engine...")
    try:
        before = lifecycle.serve_status().get("deployed_at") or 0.0
    except Exception:  # nothing deployed yet (or Serve not started)
        before = 0.0
    lifecycle.deploy(args, policy_kwargs, opts.host, opts.port)
    base = endpoint(opts.host, opts.port)
    try:
        health = lifecycle.wait_ready(base, opts.timeout_s,
                                      hooks.waiting or (lambda b: step(loading_line(b))),
                                      key=keys[0] if keys else None,
                                      serve_status_fn=lifecycle.serve_status,
                                      waiting={deployment_name(t) for t in deferred},
                                      deployed_after=before, generation=args.generation)
    except lifecycle.PoolFailed as e:
        raise UserError(f"{e}. Pools that loaded keep serving: `orchestrator status` "
                        "shows them, `orchestrator down` stops the service") from None
    engines = {deployment_name(n.node_type): f"{n.choice.precision_display} on "
               f"{serving_backend(args.engine or n.choice.backend).display}"
               for n in args.plan.pools()}
    return Served(base, args.public_name, health["replicas"], keys[0] if keys else None,
                  warnings, engines)


def loading_line(health) -> str:
    if isinstance(health, str) and health.startswith("rolling over"):
        return f"{health}: Serve replaces the changed pools, the others keep serving"
    if not isinstance(health, dict) or "pools" not in health:
        return "waiting for the endpoint..."
    return "pools: " + ", ".join(f"{dep} {p.get('state', '?')}"
                                 for dep, p in health["pools"].items())


@dataclass(frozen=True)
class Status:
    serve: dict  # Serve's own view: application and deployment states
    endpoint: str
    live: dict  # the endpoint's /status, or {"error": ...}
    code: int  # its HTTP status (0: unreachable)


def service_status(address: str | None, url: str | None, api_key: str | None) -> Status:
    """What Serve and the running endpoint say about the service `up` started."""
    state = lifecycle.load_state()
    if not api_key:
        keys = auth.load_keys(state.get("api_keys_env"), state.get("api_keys_file"))
        api_key = keys[0] if keys else None
    connect_or_explain(address or state.get("address"))
    serve_st = lifecycle.serve_status()
    base = url or endpoint(state.get("host", "127.0.0.1"), state.get("port", 8000))
    try:
        code, live = lifecycle.http_get(f"{base}/status", key=api_key)
    except OSError as e:
        code, live = 0, {"error": str(e)}
    return Status(serve_st, base, live if code == 200 else {"error": live}, code)


def connect_or_explain(address: str | None) -> None:
    from orchestrator.serve import ray_local

    try:
        ray_local.connect(address)
    except Exception as e:
        raise UserError(f"no Ray cluster to ask ({e}); start one with `orchestrator up`") \
            from None


def scale(pool: str, replicas: str, address: str | None) -> str:
    connect_or_explain(address or lifecycle.load_state().get("address"))
    return lifecycle.scale_pool(pool, replicas)
