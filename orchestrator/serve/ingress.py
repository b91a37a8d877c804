"""The one OpenAI-compatible endpoint: parses and authorizes each request
(serve/openai_api.py), keeps it to the pools that honour its fields (serve/fields.py),
counts its prompts with the model's tokenizer on a live replica (serve/tokens.py), picks
its routing policy (serve/policy_header.py), makes one job per choice and hands them to
the dispatcher (serve/answer.py, serve/dispatch.py: route, retry, timeouts, cancellation),
and writes the answer in OpenAI's wire format (serve/openai_out.py); /health, /status and
/metrics show every pool.

(No `from __future__ import annotations` here: FastAPI must see the real `Request` type
on the methods Serve wraps.)"""

import asyncio
import json
import logging
import os
import time
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
import ray
from ray import serve

from orchestrator.defaults import POLICY_HEADER
from orchestrator.serve.autoscaler import KV_NAMESPACE, decisions_key
from orchestrator.models.precision import PRECISIONS
from orchestrator.router.context import RouteRequest
from orchestrator.engines.tools import forced_schema
from orchestrator.serve import answer, fields, loads
from orchestrator.serve import openai_api as oa
from orchestrator.serve import openai_out as oa_out
from orchestrator.serve.auth import allowed, bearer
from orchestrator.serve.contract import IngressConfig, PoolRequest
from orchestrator.serve.losses import Losses
from orchestrator.serve.dispatch import Dispatcher
from orchestrator.serve.metrics import (CountResponses, make_metrics, set_autoscaling,
                                        set_pool_gauges)
from orchestrator.serve.openai_api import ApiError
from orchestrator.serve.policy_header import PolicyChoice
from orchestrator.serve.pool_router import registry
from orchestrator.serve.tokens import PromptCounter

log = logging.getLogger("ray.serve")
LOADS_TTL_S = 1.0  # /health and /status read the load records at most this often

# No /docs or /redoc: their pages load scripts from the internet. /openapi.json stays.
app = FastAPI(title="orchestrator", description="One OpenAI-compatible endpoint over "
              "pools of unequal GPU machines.", docs_url=None, redoc_url=None)
app.add_middleware(CountResponses)  # orchestrator_http_requests_total{code}


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


def _autoscaling_decisions() -> Optional[dict]:
    """What the autoscaling policy last decided per pool (None when autoscaling is off)."""
    try:
        from ray.experimental import internal_kv

        app = serve.get_replica_context().app_name
        raw = internal_kv._internal_kv_get(decisions_key(app), namespace=KV_NAMESPACE)
        return json.loads(raw) if raw else None
    except Exception:  # visibility only
        return None


def _alive_nodes() -> Optional[set[str]]:
    try:
        return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    except Exception:  # the GCS briefly out of reach: say nothing rather than guess
        return None


def _seed(seed: Optional[int], j: int) -> Optional[int]:
    """Choice j's seed: seed + j, kept a signed 64-bit value (each choice differs)."""
    return None if seed is None else (seed + j + 2**63) % 2**64 - 2**63


# Everything the class uses must be defined above it: serve.ingress serializes the class
# with the module globals that exist when the decorator runs.
@serve.ingress(app)
class Ingress:
    def __init__(self, config: IngressConfig, pools: dict):
        self.config = config
        self.name = config.model_name
        self.pools = config.pools  # deployment name -> static facts from the plan
        # Deployment name -> streaming handle. `options()` starts each handle's router
        # now, so it learns its replicas (and publishes them to pool_router's registry)
        # without a request: a request to a pool at zero replicas is what makes Serve
        # scale it from zero, so none is sent just to look.
        self.handles = {dep: h.options(stream=True) for dep, h in pools.items()}
        self.calls = {dep: h.options(stream=False) for dep, h in pools.items()}  # tokenize
        self.registry = CollectorRegistry()
        self.m = make_metrics(self.registry, {d: f.precision for d, f in self.pools.items()})
        self.choice = PolicyChoice(config.policy, config.policy_header)
        self.d = Dispatcher(
            pools=self.pools, send=self._send, listing=registry, metrics=self.m,
            policy=self.choice.deployment_policy, retries=config.retries,
            first_token_timeout_s=config.first_token_timeout_s,
            inter_token_timeout_s=config.inter_token_timeout_s,
            block_tokens=config.block_tokens)
        self.counter = PromptCounter(
            lambda dep, r: self.calls[dep].tokenize.remote(r), self.m, config.block_tokens,
            tokenizer_of={dep: f.node_plan.choice.backend for dep, f in self.pools.items()})
        self.key_digests = list(config.key_digests)
        self.public = set(config.public_paths)
        self.max_body = config.max_body_bytes
        self.default_max_tokens = config.default_max_tokens
        self.app_name = serve.get_replica_context().app_name
        self.loads_at, self.loads_cache = -LOADS_TTL_S, {}
        self.losses = Losses()

    def _send(self, dep: str, req: PoolRequest):
        return self.handles[dep].generate.remote(req)

    def _authorize(self, request: Request, path: str) -> None:
        if not self.key_digests or path in self.public:
            return
        if not allowed(bearer(request.headers.get("authorization")), self.key_digests):
            self.m["errors"].labels("-", "unauthorized").inc()
            raise ApiError(401, "a valid API key is required: send the header "
                                "'Authorization: Bearer <key>'", "invalid_request_error",
                           None, "invalid_api_key", {"WWW-Authenticate": "Bearer"})

    def _pool_states(self) -> dict[str, dict]:
        """Per pool: loading, ready or failed, with reason, restarts and load seconds."""
        now = time.monotonic()
        if now - self.loads_at >= LOADS_TTL_S:  # the records come from Ray's GCS
            self.loads_cache = {dep: loads.records(self.app_name, dep) for dep in self.pools}
            self.loads_at = now
            self.losses.update({dep: registry().get(dep, {}) for dep in self.pools},
                               _alive_nodes())
        live = self.d.live_counts()
        return {dep: {"replicas": live[dep], **loads.summary(self.loads_cache[dep], live[dep]),
                      **({"last_lost": lost} if (lost := self.losses.of(dep)) else {})}
                for dep in self.pools}

    def _model(self, model: str) -> Optional[str]:
        base, _, pin = model.partition(":")
        valid = self._model_names()
        pin = pin.lower()
        if base != self.name or (pin and pin not in PRECISIONS):
            raise ApiError(404, f"model {model!r} does not exist; valid: {', '.join(valid)}",
                           "invalid_request_error", "model", "model_not_found")
        return pin or None

    def _model_names(self) -> list[str]:
        precisions = sorted({f.precision for f in self.pools.values()},
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
        """ok: every pool has a loaded replica; degraded: some do; unavailable: none.
        Per pool: loading, ready or failed (reason, restarts, load seconds)."""
        self._authorize(request, "/health")
        pools = self._pool_states()
        counts = {dep: p["replicas"] for dep, p in pools.items()}
        state = ("ok" if all(counts.values()) else "degraded" if any(counts.values())
                 else "unavailable")
        return JSONResponse({"status": state, "replicas": counts, "pools": pools,
                             "generation": self.config.generation},
                            status_code=503 if state == "unavailable" else 200)

    @app.get("/status")
    async def status(self, request: Request):
        """This ingress's process, and per pool: its load state, replicas and their nodes,
        queue and running (the ingress's count and the engine's own), measured tokens/s."""
        self._authorize(request, "/status")
        views = {v.id: v for v in self.d.views()}
        states = self._pool_states()
        out = {}
        for dep, facts in self.pools.items():
            reps = registry().get(dep, {})
            out[dep] = {
                "pool": facts.pool, "precision": facts.precision,
                **{k: v for k, v in states.get(dep, {}).items() if k != "replicas"},
                "replicas": [{"id": rid, "node_id": info.get("node_id"),
                              "pid": (info.get("stats") or {}).get("pid"),
                              "waiting": views[rid].waiting if rid in views else 0,
                              "running": views[rid].running if rid in views else 0,
                              "engine_waiting": (info.get("stats") or {}).get("waiting", 0),
                              "engine_running": (info.get("stats") or {}).get("running", 0),
                              "suspect": rid in self.d.suspect,
                              "tokens_per_s": (info.get("stats") or {}).get(
                                  "recent_tokens_per_s", 0.0)}
                             for rid, info in reps.items()]}
        return {"ingress": {"pid": os.getpid(),
                            "node_id": ray.get_runtime_context().get_node_id(),
                            "in_flight": len(self.d.ledger.flights)},
                "pools": out, "autoscaling": _autoscaling_decisions()}

    @app.get("/metrics")
    async def metrics(self, request: Request):
        self._authorize(request, "/metrics")
        set_pool_gauges(self.m, self.pools, self.d.views(), registry())
        set_autoscaling(self.m, _autoscaling_decisions())
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(self, request: Request):
        self._authorize(request, "/v1/models")
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "orchestrator"}
            for n in self._model_names()]}

    @app.get("/v1/models/{model_id}")
    async def model(self, request: Request, model_id: str):
        """One model (the openai client's models.retrieve): the public name, or it with a
        precision pin."""
        self._authorize(request, "/v1/models")
        if model_id not in self._model_names():
            raise ApiError(404, f"model {model_id!r} does not exist; valid: "
                                f"{', '.join(self._model_names())}", "invalid_request_error",
                           "model", "model_not_found")
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "orchestrator"}

    @app.post("/v1/completions", openapi_extra=oa.openapi_body(oa.CompletionRequest))
    async def completions(self, request: Request):
        self._authorize(request, "/v1/completions")
        return await self._serve(request, chat=False)

    @app.post("/v1/chat/completions", openapi_extra=oa.openapi_body(oa.ChatRequest))
    async def chat_completions(self, request: Request):
        self._authorize(request, "/v1/chat/completions")
        return await self._serve(request, chat=True)

    async def record_autoscaling_stats(self) -> dict:
        """Called by Serve every metrics interval when autoscaling is on: refusals per
        pool since the last call (serve/autoscaler.py reads them)."""
        return self.d.take_refused()

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
        if (where := oa.not_unicode(raw)) is not None:
            raise ApiError(400, f"{where}: not valid Unicode text (a lone surrogate)",
                           "invalid_request_error", where)
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
        policy = self.choice.of(request.headers.get(POLICY_HEADER))
        try:
            pools = fields.eligible(self.pools, fields.needed(body), pin, floor, self.name)
        except ApiError:
            self.m["errors"].labels("-", "unsupported_field").inc()
            raise
        tools = [t.model_dump() for t in body.tools] if body.calls_tools() else None
        shape = answer.Shape(chat, oa_out.new_id(chat), body.model, tools,
                             bool(body.stream_options and body.stream_options.include_usage))
        jobs = await self._jobs(body, chat, shape, pin, floor, pools)
        if body.stream:
            started = await answer.start(self.d, jobs, policy)
            return StreamingResponse(answer.Streamed(self.d, jobs, started, shape),
                                     media_type="text/event-stream",
                                     headers=self._headers(started[0].dep))
        whole, dep = await answer.collect(self.d, jobs, policy, shape)
        return JSONResponse(whole, headers=self._headers(dep))

    async def _jobs(self, body, chat: bool, shape, pin, floor, pools) -> list:
        """One job per choice: `n` for each prompt, each prompt counted by the model's
        tokenizer for routing, each choice j > 0 seeded seed + j where a seed was sent."""
        max_tokens = body.output_limit(self.default_max_tokens)
        messages = [m.for_template() for m in body.messages] if chat else None
        prompts = [None] if chat else body.prompt
        schema = body.schema_text()
        if shape.tools and (forced := forced_schema(shape.tools, body.tool_choice_value())):
            schema = json.dumps(forced, sort_keys=True)
        # tokenized where it may be served: another pool's template or tokenizer may differ
        may = RouteRequest(1, 1, pinned_precision=pin, min_rank=floor, pools=pools)
        views = self.d.views()
        views = [v for v in views if may.accepts(v.precision, v.quality_rank, v.pool)] or views
        counted = await asyncio.gather(*(self.counter.count(views, p, messages, shape.tools)
                                         for p in prompts))
        bias = tuple((int(k), v) for k, v in (body.logit_bias or {}).items())
        jobs, many = [], len(prompts) * body.n > 1
        for i, (prompt, c) in enumerate(zip(prompts, counted)):
            rr = RouteRequest(c.tokens, max_tokens, pinned_precision=pin, min_rank=floor,
                              slo_ttft_s=self.config.slo_ttft_s,
                              slo_tpot_s=self.config.slo_tpot_s, block_hashes=c.block_hashes,
                              block_tokens=self.config.block_tokens, pools=pools)
            for j in range(body.n):
                index = i * body.n + j
                req = PoolRequest(
                    request_id=f"{shape.rid}-{index}" if many else shape.rid,
                    max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                    stop=tuple(body.stop or ()), seed=_seed(body.seed, j), prompt=prompt,
                    presence_penalty=body.presence_penalty,
                    frequency_penalty=body.frequency_penalty, logit_bias=bias,
                    logprobs=body.logprob_count(), json_schema=schema,
                    pinned=rr.constrained, messages=messages, tools=shape.tools)
                echo = prompt if not chat and body.echo else ""
                jobs.append(answer.Job(index, i, rr, req, echo))
        return jobs

    def _headers(self, dep: str) -> dict:
        return {"x-orchestrator-pool": dep,
                "x-orchestrator-precision": self.pools[dep].precision}
