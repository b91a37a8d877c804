"""The ingress's metrics without Ray: the precision beside every pool, the gauges /metrics
sets from replica stats and autoscaling decisions, the HTTP status middleware, and the
Grafana dashboard (helm/orchestrator/dashboards/orchestrator.json): its structure, and that
every series and label it queries is one the code exports."""

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.serve.metrics import (CountResponses, make_metrics, responses,
                                        set_autoscaling, set_pool_gauges)
from tests import dashboard

PRECISIONS = {"pool-a100": "f16", "pool-3090": "awq_int4"}
LISTING = {"pool-a100": {
    "r1": {"stats": {"running": 3, "waiting": 1, "kv_used_tokens": 300,
                     "kv_capacity_tokens": 1000, "recent_tokens_per_s": 40.0}},
    "r2": {"stats": {"running": 1, "waiting": 0, "kv_used_tokens": 100,
                     "kv_capacity_tokens": 1000, "recent_tokens_per_s": 10.0}}},
    "pool-3090": {}}
DECISIONS = {"at": 1.0, "pools": {
    "pool-a100": {"current": 2, "desired": 3, "reason": "sequences 90% > 70%: ...",
                  "cause": "sequences"},
    "pool-3090": {"current": 1, "desired": 1, "reason": "steady", "cause": "steady"}}}


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def scraped(decisions=DECISIONS):
    r = CollectorRegistry()
    m = make_metrics(r, PRECISIONS)
    views = [SimpleNamespace(pool="pool-a100", waiting=1, running=2)]
    set_pool_gauges(m, PRECISIONS, views, LISTING)
    set_autoscaling(m, decisions)
    return r, m


def test_pool_gauges_sum_the_replicas_reports():
    r, _ = scraped()
    a100 = {"pool": "pool-a100", "precision": "f16"}
    assert sample(r, "orchestrator_num_requests_running", **a100) == 4
    assert sample(r, "orchestrator_num_requests_waiting", **a100) == 1
    assert sample(r, "orchestrator_kv_cache_usage_perc", **a100) == 0.2
    assert sample(r, "orchestrator_avg_generation_throughput_toks_per_s", **a100) == 50
    assert sample(r, "orchestrator_num_replicas", **a100) == 2
    assert sample(r, "orchestrator_ingress_requests_running", **a100) == 2
    # a pool with no replica reads 0, not a division by zero
    empty = {"pool": "pool-3090", "precision": "awq_int4"}
    assert sample(r, "orchestrator_kv_cache_usage_perc", **empty) == 0
    assert sample(r, "orchestrator_num_replicas", **empty) == 0


def test_autoscaling_gauges_show_only_the_latest_reason():
    r, m = scraped()
    a100 = {"pool": "pool-a100", "precision": "f16"}
    assert sample(r, "orchestrator_autoscaling_desired_replicas", **a100) == 3
    assert sample(r, "orchestrator_autoscaling_current_replicas", **a100) == 2
    assert sample(r, "orchestrator_autoscaling_decision", reason="sequences", **a100) == 1
    later = {"pools": {**DECISIONS["pools"], "pool-a100": {
        "current": 3, "desired": 3, "reason": "steady", "cause": "steady"}}}
    set_autoscaling(m, later)
    assert sample(r, "orchestrator_autoscaling_decision", reason="sequences", **a100) is None
    assert sample(r, "orchestrator_autoscaling_decision", reason="steady", **a100) == 1


def test_autoscaling_off_exports_no_decision():
    r, _ = scraped(decisions=None)
    assert "orchestrator_autoscaling_desired_replicas{" not in generate_latest(r).decode()


def test_known_labels_start_at_zero_and_unknown_deployments_say_dash():
    r = CollectorRegistry()
    m = make_metrics(r, PRECISIONS)
    assert sample(r, "orchestrator_errors_total", pool="pool-3090", precision="awq_int4",
                  kind="first_token_timeout") == 0
    assert sample(r, "orchestrator_routing_decisions_total", pool="-", precision="-",
                  reason="overloaded") == 0
    m["errors"].labels("-", "unauthorized").inc()
    assert sample(r, "orchestrator_errors_total", pool="-", precision="-",
                  kind="unauthorized") == 1


async def _call(app, path):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await CountResponses(app)({"type": "http", "path": path}, receive, send)
    return sent


def answer(status, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": b"{}"})
    return app


def test_http_statuses_are_counted_by_the_pool_the_answer_names():
    before = dict(responses())
    pool = [("x-orchestrator-pool", "pool-a100"), ("x-orchestrator-precision", "f16")]
    sent = asyncio.run(_call(answer(200, pool), "/v1/completions"))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    asyncio.run(_call(answer(429), "/v1/chat/completions"))
    asyncio.run(_call(answer(200), "/health"))  # not a generation endpoint

    async def broken(scope, receive, send):
        raise RuntimeError("a defect")

    with pytest.raises(RuntimeError):  # re-raised: Starlette's outer middleware answers 500
        asyncio.run(_call(broken, "/v1/completions"))
    grew = {k: v - before.get(k, 0) for k, v in responses().items() if v != before.get(k, 0)}
    assert grew == {("pool-a100", "f16", "200"): 1, ("-", "-", "429"): 1, ("-", "-", "500"): 1}
    r = CollectorRegistry()
    make_metrics(r, PRECISIONS)
    assert sample(r, "orchestrator_http_requests_total", pool="-", precision="-",
                  code="429") >= 1


def test_dashboard_structure():
    dash = dashboard.load()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard.panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dashboard.panels(dash):
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
    refs = [(p["id"], t["refId"]) for p in dashboard.panels(dash) for t in p.get("targets", [])]
    assert len(refs) == len(set(refs))


def test_dashboard_asks_only_for_what_the_code_exports():
    """Every series and label the dashboard queries, against a scrape with every kind of
    series set (the live check is in tests/ray/test_serve_llamacpp.py)."""
    r, _ = scraped()
    asyncio.run(_call(answer(200), "/v1/completions"))
    assert dashboard.missing(generate_latest(r).decode()) == []
    # and it notices a series without the label a panel groups by
    lacking = dashboard.missing('orchestrator_num_replicas{pool="a"} 1.0\n')
    assert any(m.startswith("orchestrator_num_replicas{precision}") for m in lacking)
    covered = set().union(*map(dashboard.series, dashboard.queries(dashboard.load())))
    assert "orchestrator_autoscaling_decision" in covered
    assert "orchestrator_time_to_first_token_seconds_bucket" in covered


def test_the_query_parser():
    expr = ('histogram_quantile(0.9, sum by (le, pool) (rate('
            'orchestrator_x_seconds_bucket{precision=~"$p", code!="200"}[5m])))')
    assert dashboard.series(expr) == {"orchestrator_x_seconds_bucket"}
    assert dashboard.labels(expr) == {"le", "pool", "precision", "code"}
    assert dashboard.labels('label_values(orchestrator_y{pool=~"$pool"}, precision)') == {
        "pool", "precision"}
    text = 'orchestrator_x_seconds_bucket{le="1",pool="a"} 1.0\norchestrator_z 2.0\n'
    assert dashboard.exposition(text) == {"orchestrator_x_seconds_bucket": {"le", "pool"},
                                          "orchestrator_z": set()}
