"""The one OpenAI-compatible endpoint: routes each request to a pool replica with the
project's routing policy, streams the answer back, and counts everything for /metrics.

(No `from __future__ import annotations` here: FastAPI must see the real `Request` type
on the methods Serve wraps.)"""

import asyncio
import json
import os
import time
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from pydantic import ValidationError
import ray
from ray import serve

from orchestrator.autoscale.serve_policy import KV_NAMESPACE, decisions_key
from orchestrator.models.precision import PRECISIONS
from orchestrator.planner.plan import NodePlan
from orchestrator.router import policies
from orchestrator.router.context import ReplicaView, RouteRequest, view_from_plan
from orchestrator.router.ledger import Ledger
from orchestrator.router.route import (CONTEXT_TOO_LONG, OK, OVERLOADED,
                                       UNSATISFIABLE_PRECISION, route)
from orchestrator.serve import openai_api as oa
from orchestrator.serve.auth import allowed, bearer
from orchestrator.serve.pool import ContextTooLong
from orchestrator.serve.pool_router import registry

CHARS_PER_TOKEN = 4.0  # routing estimate only; the pool counts exactly before it generates
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_BODY = 1 << 20
SUSPECT_S = 10.0  # how long a replica that failed a request is passed over

# No /docs or /redoc: their pages load scripts from the internet. /openapi.json stays.
app = FastAPI(title="orchestrator", description="One OpenAI-compatible endpoint over "
              "pools of unequal GPU machines.", docs_url=None, redoc_url=None)


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        self.status, self.body = status, oa.error_body(message, type_, param, code)
        self.headers = headers or {}


@app.exception_handler(ApiError)
async def _api_error(_, e: ApiError):
    return JSONResponse(e.body, status_code=e.status, headers=e.headers)


@app.exception_handler(RequestValidationError)
async def _invalid(_, e: RequestValidationError):
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"] if p != "body") or None
    return JSONResponse(oa.error_body(f"{field}: {err['msg']}" if field else err["msg"],
                                      "invalid_request_error", field),
                        status_code=400)


def _metrics(registry: CollectorRegistry):
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
    }


def _autoscaling_decisions() -> Optional[dict]:
    """What the autoscaling policy last decided per pool (None when autoscaling is off)."""
    try:
        from ray.experimental import internal_kv

        app = serve.get_replica_context().app_name
        raw = internal_kv._internal_kv_get(decisions_key(app), namespace=KV_NAMESPACE)
        return json.loads(raw) if raw else None
    except Exception:  # visibility only
        return None


def _usage(last: dict | None) -> dict:
    p = (last or {}).get("prompt_tokens", 0)
    c = (last or {}).get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


# Everything the class uses must be defined above it: serve.ingress serializes the class
# with the module globals that exist when the decorator runs.
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, pools: dict):
        self.config = config
        self.name = config["model_name"]
        self.pools = config["pools"]  # deployment name -> static facts from the plan
        self.node_plans = {dep: NodePlan.model_validate(f["node_plan"])
                           for dep, f in self.pools.items()}
        self.templates: dict[str, ReplicaView] = {}  # replica id -> idle view, built once
        self.handles = pools  # deployment name -> DeploymentHandle
        self.policy = policies.make(config.get("policy", policies.DEFAULT_POLICY))
        self.ledger = Ledger()
        self.registry = CollectorRegistry()
        self.m = _metrics(self.registry)
        self.retries = config.get("retries", 2)
        auth = config.get("auth") or {}
        self.key_digests = list(auth.get("digests", []))
        self.public = set(auth.get("public", ["/health"]))
        self.max_body = int(config.get("max_body_bytes", DEFAULT_MAX_BODY))
        self.refused: dict[str, float] = {}  # autoscaling signal, reset when Serve reads it
        # replica id -> until when to avoid it: one that just failed a request (its node
        # may be gone) stays listed by Serve for seconds; no request should retry onto it
        self.suspect: dict[str, float] = {}

    def _authorize(self, request: Request, path: str) -> None:
        if not self.key_digests or path in self.public:
            return
        if not allowed(bearer(request.headers.get("authorization")), self.key_digests):
            self.m["errors"].labels("-", "unauthorized").inc()
            raise ApiError(401, "a valid API key is required: send the header "
                                "'Authorization: Bearer <key>'", "invalid_request_error",
                           None, "invalid_api_key", {"WWW-Authenticate": "Bearer"})

    async def _ensure_routers(self):
        # A handle's router learns its replicas only once the handle is used: ask each pool
        # that has none listed yet something cheap.
        cold = [h for dep, h in self.handles.items() if not registry().get(dep)]
        if cold:
            await asyncio.gather(*(asyncio.wait_for(h.info.remote(), 5) for h in cold),
                                 return_exceptions=True)

    # -- replicas and routing -------------------------------------------------------------
    async def _views(self) -> list[ReplicaView]:
        await self._ensure_routers()
        static = {}
        for dep, facts in self.pools.items():
            for rid, info in registry().get(dep, {}).items():
                view = self.templates.get(rid)
                if view is None:
                    view = view_from_plan(self.node_plans[dep], rid,
                                          max_waiting=facts["max_waiting"],
                                          max_context=facts["max_context"])
                    # The live pool is its deployment; the plan calls it by node type.
                    view.pool = dep
                static[rid] = view
                self.ledger.report(rid, info.get("stats") or {})
        self.templates = static  # replicas that are gone drop out
        self.ledger.sync(static)
        views = self.ledger.views()
        now = time.monotonic()
        self.suspect = {k: t for k, t in self.suspect.items() if t > now}
        healthy = [v for v in views if v.id not in self.suspect]
        return healthy or views

    def _model(self, model: str) -> Optional[str]:
        base, _, pin = model.partition(":")
        valid = self._model_names()
        pin = pin.lower()
        if base != self.name or (pin and pin not in PRECISIONS):
            raise ApiError(404, f"model {model!r} does not exist; valid: {', '.join(valid)}",
                           "invalid_request_error", "model", "model_not_found")
        return pin or None

    def _model_names(self) -> list[str]:
        precisions = sorted({f["precision"] for f in self.pools.values()},
                            key=lambda p: -PRECISIONS[p].rank)
        return [self.name] + [f"{self.name}:{p}" for p in precisions]

    def _floor(self, request: Request) -> Optional[int]:
        value = request.headers.get("x-min-precision")
        if value is None:
            return None
        p = PRECISIONS.get(value.lower())
        if p is None:
            raise ApiError(400, f"x-min-precision {value!r} is not a precision; valid: "
                                f"{', '.join(PRECISIONS)}", "invalid_request_error",
                           "x-min-precision")
        return p.rank

    # -- endpoints ----------------------------------------------------------------------
    @app.get("/health")
    async def health(self, request: Request):
        self._authorize(request, "/health")
        await self._ensure_routers()
        counts = {dep: len(registry().get(dep, {})) for dep in self.pools}
        # degraded: some pool has no replica, but the endpoint answers what the others can
        state = ("ok" if all(counts.values()) else "degraded" if any(counts.values())
                 else "unavailable")
        return JSONResponse({"status": state, "replicas": counts},
                            status_code=503 if state == "unavailable" else 200)

    @app.get("/status")
    async def status(self, request: Request):
        """This ingress's process, and per pool: replicas and their nodes, queue, running,
        measured tokens/s."""
        self._authorize(request, "/status")
        views = {v.id: v for v in await self._views()}
        out = {}
        for dep, facts in self.pools.items():
            reps = registry().get(dep, {})
            out[dep] = {
                "pool": facts["pool"], "precision": facts["precision"],
                "replicas": [{"id": rid, "node_id": info.get("node_id"),
                              "pid": (info.get("stats") or {}).get("pid"),
                              "waiting": views[rid].waiting if rid in views else 0,
                              "running": views[rid].running if rid in views else 0,
                              "tokens_per_s": (info.get("stats") or {}).get(
                                  "recent_tokens_per_s", 0.0)}
                             for rid, info in reps.items()]}
        return {"ingress": {"pid": os.getpid(),
                            "node_id": ray.get_runtime_context().get_node_id()},
                "pools": out, "autoscaling": _autoscaling_decisions()}

    @app.get("/metrics")
    async def metrics(self, request: Request):
        self._authorize(request, "/metrics")
        views = await self._views()
        for dep in self.pools:
            mine = [v for v in views if v.pool == dep]
            self.m["queue"].labels(dep).set(sum(v.waiting for v in mine))
            self.m["running"].labels(dep).set(sum(v.running for v in mine))
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(self, request: Request):
        self._authorize(request, "/v1/models")
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "orchestrator"}
            for n in self._model_names()]}

    @app.post("/v1/completions", openapi_extra=oa.openapi_body(oa.CompletionRequest))
    async def completions(self, request: Request):
        self._authorize(request, "/v1/completions")
        return await self._serve(request, chat=False)

    @app.post("/v1/chat/completions", openapi_extra=oa.openapi_body(oa.ChatRequest))
    async def chat_completions(self, request: Request):
        self._authorize(request, "/v1/chat/completions")
        return await self._serve(request, chat=True)

    # -- the request path ---------------------------------------------------------------
    async def _body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it is known to exceed the limit."""
        too_big = ApiError(413, f"the body exceeds {self.max_body} bytes (serving."
                                "max_body_bytes in the cluster spec)", "invalid_request_error",
                           None, "request_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise too_big
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > self.max_body:
                raise too_big
            parts.append(part)
        return b"".join(parts)

    async def _parse(self, request: Request, chat: bool):
        raw = await self._body(request)
        try:
            # RecursionError (deeply nested JSON) and UnicodeDecodeError are caught too.
            raw = json.loads(raw)
        except Exception:
            raise ApiError(400, "the body is not valid JSON", "invalid_request_error") from None
        if not isinstance(raw, dict):
            raise ApiError(400, "the body must be a JSON object", "invalid_request_error")
        try:
            return (oa.ChatRequest if chat else oa.CompletionRequest).model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise ApiError(400, f"{field}: {err['msg']}", "invalid_request_error",
                           field) from None

    async def _serve(self, request: Request, chat: bool):
        body = await self._parse(request, chat)
        pin = self._model(body.model)
        floor = self._floor(request)
        max_tokens = body.output_limit(DEFAULT_MAX_TOKENS)
        text = (" ".join(m.content for m in body.messages) if chat else body.prompt)
        rr = RouteRequest(max(1, round(len(text) / CHARS_PER_TOKEN)), max_tokens,
                          pinned_precision=pin, min_rank=floor,
                          slo_ttft_s=self.config.get("slo_ttft_s", 2.0),
                          slo_tpot_s=self.config.get("slo_tpot_s", 0.1))
        rid = oa.new_id(chat)
        payload = {"request_id": rid, "max_tokens": max_tokens,
                   "temperature": body.temperature, "top_p": body.top_p, "stop": body.stop,
                   "seed": body.seed, "pinned": rr.constrained}
        if chat:
            payload["messages"] = [m.model_dump() for m in body.messages]
        else:
            payload["prompt"] = body.prompt
        if body.stream:
            stream, first, dep, t0, _ = await self._start(rr, payload)
            return StreamingResponse(self._sse(chat, rid, body.model, stream, first, dep, t0),
                                     media_type="text/event-stream", headers=self._headers(dep))
        # Nothing has reached a non-streaming client until the answer is complete, so a
        # replica lost mid-answer is retried from the start on another one.
        for attempt in range(self.retries + 1):
            stream, first, dep, t0, replica = await self._start(rr, payload,
                                                                retry=attempt > 0)
            try:
                answer = await self._collect(chat, rid, body.model, stream, first, dep, t0)
                return JSONResponse(answer, headers=self._headers(dep))
            except ApiError:
                raise
            except Exception as e:
                self.m["errors"].labels(dep, "replica_failed_mid_answer").inc()
                self.suspect[replica] = time.monotonic() + SUSPECT_S
                last = e
        raise ApiError(503, f"the answer failed on {self.retries + 1} replicas "
                            f"({type(last).__name__}); retry shortly", "server_error",
                       headers={"Retry-After": "1"})

    def _headers(self, dep: str) -> dict:
        return {"x-orchestrator-pool": dep,
                "x-orchestrator-precision": self.pools[dep]["precision"]}

    async def _start(self, rr: RouteRequest, payload: dict, retry: bool = False):
        """Route, dispatch and wait for the first chunk, retrying on another replica when
        one fails before producing anything. Retries pass full queues: the failure was
        ours, and a 429 would lose the request."""
        tried: set[str] = set()
        last_error = None
        for _ in range(self.retries + 1):
            views = [v for v in await self._views() if v.id not in tried]
            if not views and tried:
                break
            d = route(self.policy, rr, views, bounded=not (retry or tried))
            if d.outcome != OK:
                raise self._route_error(d, rr)
            target = d.replica
            dep = target.pool
            self.ledger.dispatched(payload["request_id"], target.id, rr.prompt_tokens,
                                   rr.max_tokens)
            t0 = time.monotonic()
            gen = self.handles[dep].options(stream=True).generate.remote(
                {**payload, "target_replica": target.id})
            try:
                first = await gen.__anext__()
            except ContextTooLong as e:
                self.ledger.finished(payload["request_id"])
                raise ApiError(400, str(e), "invalid_request_error", "max_tokens",
                               "context_length_exceeded") from None
            except StopAsyncIteration:
                first = None
            except Exception as e:  # the replica failed before the first token: retry
                self.ledger.finished(payload["request_id"])
                self.m["errors"].labels(dep, "replica_failed_before_first_token").inc()
                tried.add(target.id)
                self.suspect[target.id] = time.monotonic() + SUSPECT_S
                last_error = e
                continue
            self.ledger.token(payload["request_id"])
            self.m["ttft"].labels(dep).observe(time.monotonic() - t0)
            return gen, first, dep, t0, target.id
        self.m["errors"].labels("-", "no_replica").inc()
        raise ApiError(503, f"no replica could serve the request ({type(last_error).__name__}"
                            f": {last_error}); retry shortly", "server_error",
                       headers={"Retry-After": "1"})

    def _configured(self, rr: RouteRequest) -> list[str]:
        """Pools of the deployment that could take this request when they have replicas."""
        return [dep for dep, f in self.pools.items()
                if rr.accepts(f["precision"], PRECISIONS[f["precision"]].rank)]

    def _route_error(self, d, rr: RouteRequest) -> ApiError:
        if d.outcome == UNSATISFIABLE_PRECISION:
            waiting_for = self._configured(rr)
            if waiting_for:  # the precision exists; its pool has lost (or not yet got) replicas
                self.m["errors"].labels("-", "no_replica").inc()
                return ApiError(503, f"{', '.join(waiting_for)} has no live replica right now "
                                     "(starting or recovering); retry shortly", "server_error",
                                None, "pool_unavailable", {"Retry-After": "2"})
            return ApiError(422, d.detail, "invalid_request_error", "model",
                            "precision_unavailable")
        if d.outcome == CONTEXT_TOO_LONG:
            return ApiError(400, d.detail, "invalid_request_error", "max_tokens",
                            "context_length_exceeded")
        if d.outcome == OVERLOADED:
            self.m["errors"].labels("-", "overloaded").inc()
            self._count_refused(rr)
            return ApiError(429, "every eligible pool is full; retry later",
                            "rate_limit_error", None, "overloaded", {"Retry-After": "1"})
        return ApiError(503, d.detail or "no replica is ready yet", "server_error",
                        headers={"Retry-After": "2"})

    def _count_refused(self, rr: RouteRequest) -> None:
        """Demand that never reached a replica, charged to the pool that would serve it
        best (the autoscaler spills it onward when that pool is at its maximum)."""
        best = max(self._configured(rr), key=lambda dep: PRECISIONS[
            self.pools[dep]["precision"]].rank, default=None)
        if best is None:
            return
        self.refused[f"refused:{best}"] = self.refused.get(f"refused:{best}", 0.0) + 1
        if rr.constrained:
            key = f"refused_pinned:{best}"
            self.refused[key] = self.refused.get(key, 0.0) + 1

    async def record_autoscaling_stats(self) -> dict:
        """Called by Serve every metrics interval when autoscaling is on: refusals per
        pool since the last call (autoscale/serve_policy.py reads them)."""
        out = {f"{kind}:{dep}": 0.0 for dep in self.pools
               for kind in ("refused", "refused_pinned")}
        out.update(self.refused)
        self.refused = {}
        return out

    async def _chunks(self, stream, first, rid: str, dep: str, t0: float):
        """The first chunk, then the rest; keeps the ledger and the metrics."""
        last = first
        try:
            if first is not None:
                yield first
            async for c in stream:
                self.ledger.token(rid)
                last = c
                yield c
            status = "ok"
        except Exception:
            status = "failed_mid_stream"
            raise
        finally:
            self.ledger.finished(rid)
            self.m["requests"].labels(dep, status if last else "empty").inc()
            if last is not None:
                n = last["completion_tokens"]
                self.m["tokens"].labels(dep, "prompt").inc(last["prompt_tokens"])
                self.m["tokens"].labels(dep, "completion").inc(n)
                if n > 1:
                    self.m["tpot"].labels(dep).observe(
                        (time.monotonic() - t0) / max(n - 1, 1))

    async def _collect(self, chat, rid, model, stream, first, dep, t0) -> dict:
        text, last = [], None
        async for c in self._chunks(stream, first, rid, dep, t0):
            text.append(c["text"])
            last = c
        finish = (last or {}).get("finish_reason") or "stop"
        return oa.full_response(chat, rid, model, "".join(text), finish, _usage(last))

    async def _sse(self, chat, rid, model, stream, first, dep, t0):
        last, opened = None, False
        try:
            async for c in self._chunks(stream, first, rid, dep, t0):
                last = c
                if c["text"] or not opened:
                    yield oa.sse(oa.chunk(chat, rid, model, c["text"], None, first=not opened))
                    opened = True
            yield oa.sse(oa.chunk(chat, rid, model, None,
                                  (last or {}).get("finish_reason") or "stop"))
            yield oa.sse(oa.usage_chunk(chat, rid, model, _usage(last)))
        except Exception as e:  # after the first token: an error event, never a hang
            self.m["errors"].labels(dep, "failed_mid_stream").inc()
            yield oa.sse(oa.error_body(f"the replica failed mid-stream: {type(e).__name__}",
                                       "server_error", code="replica_failed"))
        yield oa.sse("[DONE]")
