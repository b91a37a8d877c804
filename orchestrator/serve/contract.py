"""What crosses process boundaries into and inside the Serve application, typed:

- `AppArgs`: the application's arguments, one model for the three writers and the reader
  (`up` deploys them through a Serve config, `helm-values` and the chart render them into
  serveConfigV2, serve/entry.py reads them);
- `PoolConfig` and `IngressConfig`: what each deployment is constructed with;
- `PoolRequest` one way between the ingress and a pool replica, `engines.base.Chunk`s the
  other, and each replica's `LoadRecord`.

No Ray here: the CLI and the Helm values import this module.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.backends.base import BuildSpec
from orchestrator.config import ClusterSpec, ServingSpec
from orchestrator.defaults import SLO_TPOT_S, SLO_TTFT_S
from orchestrator.planner.plan import NodePlan, Plan
from orchestrator.router.prefix import BLOCK_TOKENS


APP_NAME = "orchestrator"  # the Serve application
INGRESS = "ingress"  # its ingress deployment
POOL_PREFIX = "pool-"
ENTRY = "orchestrator.serve.entry:app"  # the import path Serve builds the app from
AUTOSCALER = "orchestrator.serve.autoscaler:ClusterAutoscaler"  # the app-level policy


def deployment_name(node_type: str) -> str:
    return f"{POOL_PREFIX}{node_type}"


class Deferred(BaseModel):
    model_config = ConfigDict(extra="forbid")

    build: BuildSpec
    origin: tuple[str, str] | None = None  # (node id, digest) of the source's machine


class AppArgs(BaseModel):
    """The Serve application's arguments (import_path orchestrator.serve.entry:app)."""

    model_config = ConfigDict(extra="forbid")

    plan: Plan = Field(description="the plan, compacted (no explanations)")
    model_name: str | None = Field(None, description="public model name; default the plan's")
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="node type -> artifact key in each node's store "
                                          "(or an artifact directory); empty: the newest "
                                          "matching artifact in `store`")
    store: str | None = Field(None, description="the store every node mounts; None: each "
                                                "node's own, filled from peers through Ray")
    engine: str | None = Field(None, description="'simulated' replaces every engine by the "
                                                 "timing model")
    policy: str | None = Field(None, description="routing policy; default slo_aware")
    slo_ttft_s: float = Field(SLO_TTFT_S, gt=0)
    slo_tpot_s: float = Field(SLO_TPOT_S, gt=0)
    time_scale: float = Field(1.0, gt=0, description="simulated engine: scale its times")
    serving: ServingSpec = Field(default_factory=ServingSpec)
    key_digests: list[str] = Field(default_factory=list,
                                   description="SHA-256 digests of API keys (serve/auth.py)")
    scaling: dict[str, dict] | None = Field(
        None, description="deployment -> min/max/initial replicas; None: fixed replicas")
    generation: str = Field(default_factory=lambda: uuid.uuid4().hex[:12],
                            description="this deployment's id; /health reports it, so `up` "
                                        "knows when its own deployment answers")
    deferred: dict[str, Deferred] = Field(
        default_factory=dict, description="node type -> its build, for pools whose node type "
                                          "had no node at deploy: the first replica builds "
                                          "the artifact on its own node when one joins")

    @field_validator("plan", mode="before")
    @classmethod
    def _plan_json(cls, v):
        return json.loads(v) if isinstance(v, str) else v

    @property
    def public_name(self) -> str:
        return self.model_name or self.plan.model

    def config_args(self) -> dict:
        """The arguments as a Serve config carries them (JSON values only)."""
        # only the top level drops unset values: inside the plan, None is a value
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}


@dataclass(frozen=True)
class PoolConfig:
    """One pool deployment's constructor argument. Engine arguments are made in the
    replica, from its node's copy of the artifact."""

    pool: str  # node type
    precision: str
    backend: str  # the plan's
    engine: str  # what runs: the backend, or "simulated"
    node_plan: NodePlan
    model: str
    max_context: int
    stall_s: float
    artifact: str | None  # a key in the node's store, or a directory; None: simulated
    store: str | None = None  # a shared store; None: the node's own
    time_scale: float = 1.0  # the simulated engine's
    deferred: Deferred | None = None  # no artifact yet: build it here first


@dataclass(frozen=True)
class PoolFacts:
    """What the ingress knows of a pool without asking it."""

    pool: str
    precision: str
    node_plan: NodePlan
    max_context: int
    max_waiting: int
    engine: str = ""  # what runs there, in words (a backend, or the simulated engine)
    features: frozenset[str] = frozenset()  # the request features it honours


@dataclass(frozen=True)
class IngressConfig:
    model_name: str
    pools: dict[str, PoolFacts]  # deployment name -> facts
    policy: str | None
    slo_ttft_s: float
    slo_tpot_s: float
    key_digests: tuple[str, ...]
    public_paths: tuple[str, ...]
    max_body_bytes: int
    default_max_tokens: int
    first_token_timeout_s: float
    inter_token_timeout_s: float
    generation: str = ""
    retries: int = 2
    policy_header: bool = False  # x-orchestrator-policy may choose the routing policy
    block_tokens: int = BLOCK_TOKENS  # tokens per prefix block the router hashes


@dataclass(frozen=True)
class PoolRequest:
    request_id: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None
    json_schema: str | None = None
    prompt: str | None = None
    messages: list[dict] | None = None
    tools: list[dict] | None = None  # rendered by the chat template
    pinned: bool = False  # held to one precision: counts as demand for that pool alone
    target_replica: str | None = None  # the ingress's choice; the pool router honours it


@dataclass(frozen=True)
class TokenizeRequest:
    """The ingress asks one live replica for a prompt's token ids before routing it."""

    prompt: str | None = None
    messages: list[dict] | None = None
    target_replica: str | None = None  # the pool router honours it, as for PoolRequest
    tools: list[dict] | None = None


@dataclass(frozen=True)
class LoadRecord:
    """One replica's engine load, kept in Ray's key-value store for `up`, `/health` and
    `status`: loading, ready or failed, with the reason and how long it took."""

    replica: str
    pid: int
    state: str  # loading | ready | failed
    started_at: float
    load_s: float | None = None
    reason: str | None = None


def compact_plan(plan: Plan) -> Plan:
    """The plan without its explanations: what the cluster needs to deploy it."""
    return plan.model_copy(update={"node_types": [
        n.model_copy(update={"alternatives": [], "rejected": [], "not_offered": []})
        for n in plan.pools()]})


def app_args(plan: Plan, spec: ClusterSpec, *, model_name: str | None = None,
             artifacts: dict[str, str] | None = None, store: str | None = None,
             engine: str | None = None, policy: str | None = None,
             key_digests: list[str] | None = None, deferred: dict | None = None,
             keys_in_cluster: bool = False) -> tuple[AppArgs, dict | None]:
    """The application's arguments for this plan and spec, and the application-level
    autoscaling policy's arguments (None where no node type autoscales). With
    `keys_in_cluster` the app reads API keys where `serving` says (a Kubernetes Secret);
    otherwise the keys stay with the caller and only `key_digests` travel."""
    from orchestrator.autoscale.bounds import autoscaled, scaling_config

    exclude = set() if keys_in_cluster else {"api_keys_env", "api_keys_file"}
    serving = ServingSpec.model_validate(
        spec.serving.model_dump(exclude=exclude) | ({} if keys_in_cluster
                                                    else {"api_keys_env": None}))
    scaling = policy_kwargs = None
    if autoscaled(spec):
        names = {n.node_type: deployment_name(n.node_type) for n in plan.pools()}
        scaling, policy_kwargs = scaling_config(plan, spec, names, APP_NAME)
    args = AppArgs(plan=compact_plan(plan), model_name=model_name, artifacts=artifacts or {},
                   store=store, engine=engine, policy=policy, serving=serving,
                   key_digests=list(key_digests or []), scaling=scaling,
                   deferred=deferred or {})
    return args, policy_kwargs
