"""Build the Serve application from a Plan: one pool deployment per node type (replicas
pinned to that type's GPU groups by placement group), one ingress in front."""

from __future__ import annotations

from pathlib import Path

from ray import serve
from ray.serve.config import RequestRouterConfig

from orchestrator.config import ServingSpec
from orchestrator.models.backends import BACKENDS
from orchestrator.models.catalog import get_model
from orchestrator.planner.plan import NodePlan, Plan
from orchestrator.serve.ingress import Ingress
from orchestrator.serve.pool import Pool
from orchestrator.serve.pool_router import PoolRouter

# llama.cpp allocates its whole context when it loads; cap what one replica reserves.
LLAMACPP_MAX_CONTEXT = 8192
ROUTING_STATS_PERIOD_S = 0.5
HEAD = "node:__internal_head__"  # a resource Ray gives the head node only
# Serve lets a replica hold 5 requests by default; the ingress only awaits the pools and
# bounds the real queues itself (max_waiting per replica, then 429), so it takes every
# request at once. Beyond these the proxy answers 503 instead of queueing without bound.
INGRESS_MAX_ONGOING = 4096
INGRESS_MAX_QUEUED = 1024
# How often replicas report their stats to the autoscaler and over what window they are
# averaged: seconds, not Serve's default 30 s window, since LLM load moves fast. Serve
# also wraps an application-level policy in its own up/down delays (30 s and 600 s by
# default); they are zero here because the policy's cooldowns (the spec's autoscaling
# knobs) already decide when.
AUTOSCALING_SIGNALS = {"metrics_interval_s": 1.0, "look_back_period_s": 4.0,
                       "upscale_delay_s": 0.0, "downscale_delay_s": 0.0,
                       "downscale_to_zero_delay_s": 0.0}


def deployment_name(node_type: str) -> str:
    return f"pool-{node_type}"


def engine_args(n: NodePlan, plan: Plan, engine: str, artifact: str | None,
                time_scale: float) -> tuple[dict, int]:
    """The engine's constructor arguments and the context one replica serves."""
    c = n.choice
    ctx = c.memory.max_context
    if engine == "simulated":
        return ({"speeds": c.speed_model.speeds(), "kv_capacity_tokens": c.memory.kv_tokens,
                 "max_batch": BACKENDS[c.backend].max_batch, "time_scale": time_scale}, ctx)
    if artifact is None:
        raise ValueError(f"{n.node_type}: no built artifact; run orchestrator build")
    if engine == "llamacpp":
        ctx = min(ctx, LLAMACPP_MAX_CONTEXT)
        cores = int(c.replica_resources.get("CPU", 0)) or None
        return ({"model_path": str(Path(artifact) / "model.gguf"), "n_ctx": ctx,
                 "n_threads": cores, "n_gpu_layers": 0 if "GPU" not in c.replica_resources
                 else -1, "chat_template": get_model(plan.model).chat_template}, ctx)
    if engine == "vllm":
        import json

        rec = json.loads((Path(artifact) / "vllm.json").read_text())
        ctx = min(ctx, rec.get("max_model_len") or ctx)
        return ({"model": str(Path(artifact) / rec["model"]),  # absolute stays absolute
                 "tensor_parallel_size": rec["tensor_parallel_size"],
                 "dtype": rec["dtype"], "quantization": rec.get("quantization"),
                 "max_model_len": rec.get("max_model_len"),
                 "enforce_eager": rec.get("enforce_eager", False),
                 "cpu_kv_space_gib": rec.get("cpu_kv_space_gib"),
                 "chat_template": get_model(plan.model).chat_template}, ctx)
    return ({"artifact_dir": artifact, "tensor_parallel_size": c.gpus_per_replica}, ctx)


def placement(n: NodePlan, engine: str) -> tuple[dict, list[dict]]:
    """Actor options and placement-group bundles for one replica of this pool."""
    c = n.choice
    res = dict(c.replica_resources)
    gpus = res.pop("GPU", 0.0)
    cpus = res.pop("CPU", 1.0)
    if engine == "simulated":
        gpus, cpus = 0.0, 0.0  # a timing model holds no device; the group resource still pins it
    first = {"CPU": cpus, **res}
    actor_gpus = gpus
    extra: list[dict] = []
    if engine == "vllm" and gpus > 1:
        # vLLM's tensor-parallel workers are Ray actors in this placement group, one GPU each
        extra = [{"GPU": 1.0} for _ in range(int(gpus))]
        actor_gpus = 0.0
    elif gpus:
        first["GPU"] = gpus
    actor = {"num_cpus": cpus, "num_gpus": actor_gpus, "resources": res}
    return actor, [first, *extra]


def build_app(plan: Plan, *, model_name: str, artifacts: dict[str, str] | None = None,
              engine: str | None = None, policy: str | None = None,
              slo_ttft_s: float = 2.0, slo_tpot_s: float = 0.1, max_waiting: int = 64,
              time_scale: float = 1.0, key_digests: list[str] | None = None,
              public_paths: list[str] | None = None, max_body_bytes: int = 1 << 20,
              max_context: int | None = None, scaling: dict[str, dict] | None = None,
              serving: ServingSpec | None = None):
    """The Serve application. `key_digests` are SHA-256 digests of the API keys (see
    serve/auth.py); none means the endpoint takes no key. `scaling` (deployment name ->
    min/max/initial replicas) turns on Serve autoscaling for every deployment, for the
    application-level policy in serve/autoscaler.py to drive. `serving` gives the
    timeouts, the engine stall bound and the default output limit."""
    artifacts = artifacts or {}
    serving = serving or ServingSpec()
    handles, facts = {}, {}
    for n in plan.pools():
        c = n.choice
        eng = engine or c.backend
        args, ctx = engine_args(n, plan, eng, artifacts.get(n.node_type), time_scale)
        ctx = min(ctx, max_context) if max_context else ctx
        dep = deployment_name(n.node_type)
        actor, bundles = placement(n, eng)
        max_batch = BACKENDS[c.backend].max_batch
        config = {"pool": n.node_type, "precision": c.precision, "engine": eng,
                  "backend": c.backend, "engine_args": args, "max_context": ctx,
                  "stall_s": serving.engine_stall_s,
                  # a real engine checks its artifact before it loads it
                  "artifact": artifacts.get(n.node_type) if eng != "simulated" else None}
        if scaling is not None:
            bounds = scaling.get(dep) or {"min_replicas": n.replicas,
                                          "max_replicas": n.replicas,
                                          "initial_replicas": n.replicas}
            replicas = {"autoscaling_config": {**bounds, **AUTOSCALING_SIGNALS}}
        else:
            replicas = {"num_replicas": n.replicas}
        handles[dep] = serve.deployment(Pool).options(
            name=dep, **replicas, ray_actor_options=actor,
            placement_group_bundles=bundles, placement_group_strategy="STRICT_PACK",
            max_ongoing_requests=max_batch + max_waiting,
            request_router_config=RequestRouterConfig(
                request_router_class=PoolRouter,
                request_routing_stats_period_s=ROUTING_STATS_PERIOD_S),
        ).bind(config)
        facts[dep] = {"pool": n.node_type, "precision": c.precision,
                      "node_plan": n.model_dump(mode="json"), "max_context": ctx,
                      "max_waiting": max_waiting}
    config = {"model_name": model_name, "pools": facts, "slo_ttft_s": slo_ttft_s,
              "slo_tpot_s": slo_tpot_s, **({"policy": policy} if policy else {}),
              "auth": {"digests": list(key_digests or []),
                       "public": list(public_paths if public_paths is not None
                                      else ["/health"])},
              "max_body_bytes": max_body_bytes,
              "default_max_tokens": serving.default_max_tokens,
              "first_token_timeout_s": serving.first_token_timeout_s,
              "inter_token_timeout_s": serving.inter_token_timeout_s}
    # The ingress sits on the head beside the only HTTP proxy (proxy_location HeadOnly):
    # no extra hop, and losing a GPU node never takes the router with it.
    # With autoscaling on, the ingress is an autoscaled deployment fixed at one replica, so
    # that its refusal counts reach the policy beside the pools' stats.
    ingress_replicas = ({"autoscaling_config": {"min_replicas": 1, "max_replicas": 1,
                                                **AUTOSCALING_SIGNALS}}
                        if scaling is not None else {})
    return serve.deployment(Ingress).options(
        name="ingress", ray_actor_options={"num_cpus": 0, "resources": {HEAD: 0.001}},
        max_ongoing_requests=INGRESS_MAX_ONGOING, max_queued_requests=INGRESS_MAX_QUEUED,
        **ingress_replicas,
    ).bind(config, handles)
