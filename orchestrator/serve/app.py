"""Build the Serve application from its typed arguments: one pool deployment per node
type (replicas pinned to that type's GPU groups by placement group), one ingress in front.
What a pool runs and where comes from its backend (backends/<id>.py)."""

from __future__ import annotations

from ray import serve
from ray.serve.config import RequestRouterConfig

from orchestrator.backends import get_backend, serving_backend
from orchestrator.serve.contract import (INGRESS, AppArgs, IngressConfig, PoolConfig,
                                         PoolFacts, deployment_name)
from orchestrator.serve.ingress import Ingress
from orchestrator.serve.pool import Pool
from orchestrator.serve.pool_router import PoolRouter

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


def build_app(args: AppArgs):
    """The Serve application. `args.key_digests` are SHA-256 digests of the API keys (see
    serve/auth.py); none means the endpoint takes no key. `args.scaling` (deployment name ->
    min/max/initial replicas) turns on Serve autoscaling for every deployment, for the
    application-level policy in serve/autoscaler.py to drive. Real engines need
    `args.artifacts` for every pool (serve/entry.py resolves them from a store)."""
    plan, serving = args.plan, args.serving
    handles, facts = {}, {}
    for n in plan.pools():
        c = n.choice
        engine = args.engine or c.backend
        runs = serving_backend(engine, args.time_scale)
        artifact = None if engine == "simulated" else args.artifacts.get(n.node_type)
        deferred = args.deferred.get(n.node_type) if engine != "simulated" else None
        if artifact is None and deferred is None and engine != "simulated":
            raise ValueError(f"{n.node_type}: no built artifact; run orchestrator build")
        ctx = runs.serving_context(n)
        ctx = min(ctx, serving.max_context) if serving.max_context else ctx
        dep = deployment_name(n.node_type)
        actor, bundles = runs.placement(n)
        config = PoolConfig(pool=n.node_type, precision=c.precision, backend=c.backend,
                            engine=engine, node_plan=n, model=plan.model, max_context=ctx,
                            stall_s=serving.engine_stall_s, artifact=artifact,
                            store=args.store, time_scale=args.time_scale,
                            deferred=None if artifact else deferred)
        if args.scaling is not None:
            bounds = args.scaling.get(dep) or {"min_replicas": n.replicas,
                                               "max_replicas": n.replicas,
                                               "initial_replicas": n.replicas}
            replicas = {"autoscaling_config": {**bounds, **AUTOSCALING_SIGNALS}}
        else:
            replicas = {"num_replicas": n.replicas}
        handles[dep] = serve.deployment(Pool).options(
            name=dep, **replicas, ray_actor_options=actor,
            placement_group_bundles=bundles, placement_group_strategy="STRICT_PACK",
            max_ongoing_requests=get_backend(c.backend).replica_batch(c) + serving.max_waiting,
            request_router_config=RequestRouterConfig(
                request_router_class=PoolRouter,
                request_routing_stats_period_s=ROUTING_STATS_PERIOD_S),
        ).bind(config)
        facts[dep] = PoolFacts(pool=n.node_type, precision=c.precision, node_plan=n,
                               max_context=ctx, max_waiting=serving.max_waiting,
                               engine=runs.display, features=runs.honours())
    config = IngressConfig(
        model_name=args.public_name, pools=facts, policy=args.policy,
        slo_ttft_s=args.slo_ttft_s, slo_tpot_s=args.slo_tpot_s,
        key_digests=tuple(args.key_digests), public_paths=tuple(serving.public_paths),
        max_body_bytes=serving.max_body_bytes, default_max_tokens=serving.default_max_tokens,
        first_token_timeout_s=serving.first_token_timeout_s,
        inter_token_timeout_s=serving.inter_token_timeout_s, generation=args.generation,
        policy_header=serving.policy_header, block_tokens=serving.block_tokens)
    # The ingress sits on the head beside the only HTTP proxy (proxy_location HeadOnly):
    # no extra hop, and losing a GPU node never takes the router with it.
    # With autoscaling on, the ingress is an autoscaled deployment fixed at one replica, so
    # that its refusal counts reach the policy beside the pools' stats.
    ingress_replicas = ({"autoscaling_config": {"min_replicas": 1, "max_replicas": 1,
                                                **AUTOSCALING_SIGNALS}}
                        if args.scaling is not None else {})
    return serve.deployment(Ingress).options(
        name=INGRESS, ray_actor_options={"num_cpus": 0, "resources": {HEAD: 0.001}},
        max_ongoing_requests=INGRESS_MAX_ONGOING, max_queued_requests=INGRESS_MAX_QUEUED,
        **ingress_replicas,
    ).bind(config, handles)
