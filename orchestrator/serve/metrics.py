"""The ingress's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def make_metrics(registry: CollectorRegistry) -> dict:
    return {
        "requests": Counter("orchestrator_requests", "Requests by pool and status",
                            ["pool", "status"], registry=registry),
        "errors": Counter("orchestrator_errors", "Errors by kind", ["pool", "kind"],
                          registry=registry),
        "ttft": Histogram("orchestrator_ttft_seconds", "Time to first token", ["pool"],
                          registry=registry,
                          buckets=(.05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64)),
        "tpot": Histogram("orchestrator_tpot_seconds", "Time per output token", ["pool"],
                          registry=registry,
                          buckets=(.005, .01, .02, .04, .06, .1, .15, .25, .5, 1)),
        "tokens": Counter("orchestrator_tokens", "Tokens by pool and kind", ["pool", "kind"],
                          registry=registry),
        "queue": Gauge("orchestrator_queue_depth", "Requests waiting for a first token",
                       ["pool"], registry=registry),
        "running": Gauge("orchestrator_running", "Requests producing tokens", ["pool"],
                         registry=registry),
        "tokenize": Histogram("orchestrator_tokenize_seconds", "Asking a replica for a "
                              "prompt's token ids before routing it", registry=registry,
                              buckets=(.001, .002, .005, .01, .02, .05, .1, .25, .5, 1)),
        "tokenize_fallbacks": Counter("orchestrator_tokenize_fallbacks", "Prompts routed on "
                                      "characters / 4: no replica gave their token ids",
                                      ["reason"], registry=registry),
    }
