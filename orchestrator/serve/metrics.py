"""The ingress's Prometheus metrics, in a registry of its own, and what the /metrics handler
sets from the replicas' reports and the autoscaler's decisions at scrape time.

Names mirror vLLM's where the meaning is the same (vllm:time_to_first_token_seconds ->
orchestrator_time_to_first_token_seconds, vllm:num_requests_running ->
orchestrator_num_requests_running, ...), so they read as vLLM's do. Every per-pool
series carries `pool` (the deployment, as the x-orchestrator-pool header names it) and
`precision`; series that belong to no pool (a request refused before routing) say "-".
The Grafana dashboard helm/orchestrator/dashboards/orchestrator.json queries these names.
"""

from __future__ import annotations

import collections
import importlib
from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from orchestrator.router.route import (CONTEXT_TOO_LONG, FLOOR, OVERLOADED, PINNED, PREFERRED,
                                       SPILL, UNSATISFIABLE_PRECISION)

NONE = "-"  # the pool and precision of a series that belongs to no pool
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")

# The label values known up front, set to 0 at start so that a pool's first error shows
# in rate() and a quiet pool's panels read 0, not "no data". One missing here still
# counts, from its first occurrence (Prometheus: "avoid missing metrics").
POOL_ERRORS = ("bad_request", "first_token_timeout", "inter_token_timeout",
               "replica_failed_before_first_token", "replica_failed_mid_answer",
               "failed_mid_stream")
ROUTING_ERRORS = ("no_replica", "overloaded", "unauthorized", "bad_request",
                  "unsupported_field")
ROUTED = (PINNED, FLOOR, SPILL, PREFERRED)
REFUSED = (OVERLOADED, UNSATISFIABLE_PRECISION, CONTEXT_TOO_LONG)
FALLBACKS = ("no_replica", "timeout", "error")  # serve/tokens.py

# (pool, precision, code) -> responses. Counted by the ASGI middleware below, the one
# place that sees every status code (the ingress's own 400/401/404/413 before routing
# included). Serve freezes a copy of the FastAPI app, middleware list and all, when the
# ingress class is decorated; the middleware and the collector both reach this through the
# imported module, so they share one counter per process (one ingress per Serve replica).
RESPONSES: collections.Counter = collections.Counter()


def responses() -> collections.Counter:
    return importlib.import_module(__name__).RESPONSES


class CountResponses:
    """ASGI middleware: counts the generation endpoints' responses by status code and by
    the pool and precision their headers name. Plain ASGI, not Starlette's
    BaseHTTPMiddleware: it only reads the response's start message, and leaves the body,
    streaming and a client's disconnect (which cancels the request) as they are."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") not in GENERATION_PATHS:
            return await self.app(scope, receive, send)

        started = False

        async def counted(message):
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
                h = {k.decode("latin-1").lower(): v.decode("latin-1")
                     for k, v in message.get("headers") or ()}
                responses()[(h.get("x-orchestrator-pool", NONE),
                             h.get("x-orchestrator-precision", NONE),
                             str(message.get("status", 0)))] += 1
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            # Starlette's outermost middleware answers an unhandled error with a 500, past
            # this one: count it here
            if not started:
                responses()[(NONE, NONE, "500")] += 1
            raise


class _ResponsesCollector:
    def collect(self):
        c = CounterMetricFamily("orchestrator_http_requests", "Responses of the generation "
                                "endpoints by HTTP status code", labels=["pool", "precision",
                                                                        "code"])
        for labels, n in sorted(responses().items()):
            c.add_metric(list(labels), n)
        yield c


class _PerPool:
    """A metric labelled (pool, precision, ...) that callers label by deployment alone:
    the precision is a fact of the deployment, looked up here, not at each call site."""

    def __init__(self, metric, precisions: Mapping[str, str]):
        self.metric, self.precisions = metric, precisions

    def labels(self, dep: str, *rest: str):
        return self.metric.labels(dep, self.precisions.get(dep, NONE), *rest)

    def clear(self) -> None:
        self.metric.clear()


LATENCY = (.05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128)
PER_TOKEN = (.005, .01, .02, .04, .06, .1, .15, .25, .5, 1, 2.5)


def make_metrics(registry: CollectorRegistry,
                 precisions: Mapping[str, str] | None = None) -> dict:
    """`precisions`: deployment -> precision; an unknown deployment's series say "-"."""
    p = dict(precisions or {})
    pp = ["pool", "precision"]

    def per_pool(kind, name, doc, extra=(), **kw):
        return _PerPool(kind(name, doc, pp + list(extra), registry=registry, **kw), p)

    registry.register(_ResponsesCollector())
    m = {
        "requests": per_pool(Counter, "orchestrator_requests", "Requests that reached a "
                             "replica, by how their stream ended (ok, client_gone, timeout, "
                             "failed_mid_stream, empty)", ["outcome"]),
        "errors": per_pool(Counter, "orchestrator_errors", "Errors by kind", ["kind"]),
        "routes": per_pool(Counter, "orchestrator_routing_decisions", "Routing decisions by "
                           "reason (router/route.py: pinned, floor, spill, preferred, "
                           "overloaded, ...)", ["reason"]),
        "ttft": per_pool(Histogram, "orchestrator_time_to_first_token_seconds", "From "
                         "dispatch to a replica to the first token", buckets=LATENCY),
        "tpot": per_pool(Histogram, "orchestrator_time_per_output_token_seconds", "From "
                         "the first token to the last over the tokens after the first",
                         buckets=PER_TOKEN),
        "e2e": per_pool(Histogram, "orchestrator_e2e_request_latency_seconds", "From "
                        "dispatch to a replica to the stream's end, requests that finished",
                        buckets=LATENCY),
        "prompt_tokens": per_pool(Counter, "orchestrator_prompt_tokens", "Prompt tokens, as "
                                  "the engines counted them"),
        "routed_prompt_tokens": per_pool(Counter, "orchestrator_routed_prompt_tokens",
                                         "Prompt tokens as routing counted them (beside "
                                         "orchestrator_prompt_tokens: they should agree)"),
        "generation_tokens": per_pool(Counter, "orchestrator_generation_tokens",
                                      "Generated tokens"),
        "ingress_waiting": per_pool(Gauge, "orchestrator_ingress_requests_waiting",
                                    "Requests the ingress dispatched that have no first "
                                    "token yet"),
        "ingress_running": per_pool(Gauge, "orchestrator_ingress_requests_running",
                                    "Requests the ingress dispatched that are producing "
                                    "tokens"),
        "running": per_pool(Gauge, "orchestrator_num_requests_running", "Sequences the "
                            "engines run, as the replicas report"),
        "waiting": per_pool(Gauge, "orchestrator_num_requests_waiting", "Sequences the "
                            "engines queue, as the replicas report"),
        "kv": per_pool(Gauge, "orchestrator_kv_cache_usage_perc", "KV cache in use over "
                       "capacity, the pool's replicas together (1 = full)"),
        "throughput": per_pool(Gauge, "orchestrator_avg_generation_throughput_toks_per_s",
                               "Tokens per second the pool's engines generated lately"),
        "replicas": per_pool(Gauge, "orchestrator_num_replicas", "Live replicas, as the "
                             "pool's router lists them"),
        "desired": per_pool(Gauge, "orchestrator_autoscaling_desired_replicas",
                            "What the autoscaling policy last decided (only when it is on)"),
        "current": per_pool(Gauge, "orchestrator_autoscaling_current_replicas",
                            "Replicas the autoscaling policy saw when it decided"),
        "decision": per_pool(Gauge, "orchestrator_autoscaling_decision", "1 for the cause "
                             "of the last autoscaling decision per pool (autoscale/policy.py "
                             "CAUSES; `orchestrator status` has the reason's text)",
                             ["reason"]),
        "tokenize": Histogram("orchestrator_tokenize_seconds", "Asking a replica for a "
                              "prompt's token ids before routing it", registry=registry,
                              buckets=(.001, .002, .005, .01, .02, .05, .1, .25, .5, 1)),
        "tokenize_fallbacks": Counter("orchestrator_tokenize_fallbacks", "Prompts routed on "
                                      "characters / 4: no replica gave their token ids",
                                      ["reason"], registry=registry),
    }
    _zero(m, p)
    return m


def _zero(m: dict, deployments) -> None:
    for dep in deployments:
        for key in ("ttft", "tpot", "e2e", "prompt_tokens", "routed_prompt_tokens",
                    "generation_tokens"):
            m[key].labels(dep)
        m["requests"].labels(dep, "ok")
        for kind in POOL_ERRORS:
            m["errors"].labels(dep, kind)
        for why in ROUTED:
            m["routes"].labels(dep, why)
    for kind in ROUTING_ERRORS:
        m["errors"].labels(NONE, kind)
    for why in REFUSED:
        m["routes"].labels(NONE, why)
    for reason in FALLBACKS:
        m["tokenize_fallbacks"].labels(reason)


def set_pool_gauges(m: dict, pools: Mapping[str, object], views: list,
                    listing: Mapping[str, dict]) -> None:
    """The gauges of each pool at scrape time: the ingress's own in-flight counts (its
    ledger's `views`) and the engines' (each replica's last routing stats in `listing`)."""
    for dep in pools:
        mine = [v for v in views if v.pool == dep]
        m["ingress_waiting"].labels(dep).set(sum(v.waiting for v in mine))
        m["ingress_running"].labels(dep).set(sum(v.running for v in mine))
        stats = [info.get("stats") or {} for info in (listing.get(dep) or {}).values()]
        m["replicas"].labels(dep).set(len(stats))
        m["running"].labels(dep).set(sum(s.get("running", 0) for s in stats))
        m["waiting"].labels(dep).set(sum(s.get("waiting", 0) for s in stats))
        cap = sum(s.get("kv_capacity_tokens", 0) for s in stats)
        used = sum(s.get("kv_used_tokens", 0) for s in stats)
        m["kv"].labels(dep).set(used / cap if cap else 0.0)
        m["throughput"].labels(dep).set(sum(s.get("recent_tokens_per_s", 0.0)
                                            for s in stats))


def set_autoscaling(m: dict, decisions: dict | None) -> None:
    """The autoscaling policy's last decision per pool (serve/autoscaler.py publishes
    {"pools": {dep: {"current", "desired", "cause", ...}}}); nothing when it is off. The
    reason gauge is rebuilt each time, so a pool shows only its latest reason."""
    m["decision"].clear()
    for dep, d in ((decisions or {}).get("pools") or {}).items():
        m["desired"].labels(dep).set(d.get("desired", 0))
        m["current"].labels(dep).set(d.get("current", 0))
        m["decision"].labels(dep, d.get("cause", "unknown")).set(1)
