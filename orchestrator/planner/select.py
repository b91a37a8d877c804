"""Plan selection: enumerate (precision, backend, GPUs per replica), drop what does not run
or fit, and let the objective pick. Pure: a spec in, a Plan out."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from orchestrator.config import ClusterSpec, NodeTypeSpec, PlannerSpec
from orchestrator.defaults import gpu_group_resource
from orchestrator.errors import Deprecated, NoFeasiblePlanError, UserError
from orchestrator.hardware.catalog import GB
from orchestrator.backends import BACKEND_ORDER, BACKENDS, Backend
from orchestrator.models.catalog import ModelArch, get_model
from orchestrator.models.checkpoints import CHECKPOINTS
from orchestrator.models.precision import at_least, get_precision, quality_order
from orchestrator.planner import memory as mem
from orchestrator.planner import objectives
from orchestrator.planner.checkpoints import starting_point
from orchestrator.planner.nodes import NodeHardware, ReplicaLayout, hardware_of
from orchestrator.planner.performance import decode_efficiency, prefill_efficiency, speeds
from orchestrator.planner.plan import (
    Choice, MemorySplit, NodePlan, PerfEstimate, Plan, Rejection, SpeedModel,
)

# The seed guide's method (docs/sources.md: The seed guide): 512-token prompt, 256 output
# tokens -> mean context 640.
SEED_PROMPT, SEED_OUTPUT = 512, 256


def _gb(b: float) -> str:
    return f"{b / GB:.2f} GB"


@dataclass(frozen=True)
class NodeRequest:
    """What the planner needs about one node type, spec-independent (tests build these)."""

    name: str
    hw: NodeHardware
    count: int = 1
    objective: str | None = None  # this node type's own; None: the planner's
    precisions: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    max_batch: int | None = None  # what an upstream server says it decodes at once
    # the checkpoint kinds the spec names (artifacts.sources); None: names none
    checkpoints: frozenset[str] | None = None


def request_of(nt: NodeTypeSpec, checkpoints: frozenset[str] | None = None) -> NodeRequest:
    return NodeRequest(nt.name, hardware_of(nt), nt.count, nt.objective,
                       tuple(nt.precisions) if nt.precisions else None,
                       tuple(nt.backends) if nt.backends else None,
                       nt.upstream.max_batch if nt.upstream else None, checkpoints)


def plan_cluster(spec: ClusterSpec, *, model: str | None = None, objective: str | None = None,
                 min_context: int | None = None, min_precision: str | None = None,
                 policy: str | None = None) -> Plan:
    """``policy`` is the deprecated spelling of ``objective``, kept for old callers."""
    if policy is not None:
        if objective is not None:
            # a user error: the CLI may pass --objective and --policy straight through
            raise UserError(f"objective {objective!r} and policy {policy!r} both given; "
                            "policy is the deprecated name of objective, give only objective")
        warnings.warn("plan_cluster(policy=...) is deprecated; pass objective=...",
                      Deprecated, stacklevel=2)
        objective = policy
    overrides = {k: v for k, v in dict(objective=objective, min_context=min_context,
                                       min_precision=min_precision).items() if v is not None}
    ps = PlannerSpec.model_validate({**spec.planner.model_dump(), **overrides})
    arch = get_model(model or spec.model)
    named = frozenset(spec.artifacts.sources) or None
    nodes = [plan_node(request_of(nt, named), arch, ps) for nt in spec.node_types]
    return Plan(cluster=spec.name, model=arch.id, model_display=arch.display,
                objective=ps.objective, min_context=ps.min_context,
                min_precision=ps.min_precision,
                kv_cache_dtype=ps.kv_cache_dtype, typical_sequence=ps.typical_sequence,
                node_types=nodes)


def require_feasible(plan: Plan) -> Plan:
    if not plan.feasible:
        lines = [f"{n.node_type}: {n.shortfall}" for n in plan.node_types]
        raise NoFeasiblePlanError(
            f"{plan.model} fits on no node type of cluster {plan.cluster!r}:\n  "
            + "\n  ".join(lines))
    return plan


def plan_node(req: NodeRequest, model: ModelArch, ps: PlannerSpec) -> NodePlan:
    objective = objectives.make(req.objective or ps.objective)
    allowed = [p for p in quality_order() if req.precisions is None or p in req.precisions]
    backend_ids = [b for b in BACKEND_ORDER
                   if (req.backends or ps.backends or BACKEND_ORDER).count(b)]
    fits: list[Choice] = []
    rejected: list[Rejection] = []
    not_offered: list[str] = []
    if model.available is not None:
        for pid in allowed:
            if pid not in model.available:
                rejected.append(Rejection(
                    precision=pid, backend=None, layout=None, kind="unavailable",
                    reason=f"no {get_precision(pid).display} checkpoint is made for {model.id}"))
        allowed = [p for p in allowed if p in model.available]
    for pid in allowed:
        if not at_least(pid, ps.min_precision):
            rejected.append(Rejection(
                precision=pid, backend=None, layout=None, kind="floor",
                reason=f"below the precision floor {ps.min_precision}"))
    for bid in backend_ids:
        backend = BACKENDS[bid]
        opted_in = bid in (req.backends or ())
        skipped = [p for p in allowed
                   if not backend.offers(p, cpu=req.hw.is_cpu, opted_in=opted_in)]
        if len(skipped) == len(allowed) and req.hw.is_cpu:
            not_offered.append(f"{bid}: does not run on CPU" if not backend.cpu_support else
                               f"{bid}: runs on CPU only where the node type lists it in "
                               f"backends ({', '.join(sorted(backend.cpu_support))})")
        elif skipped:
            not_offered.append(f"{bid}: {', '.join(skipped)}")
        for pid in allowed:
            if pid in skipped or not at_least(pid, ps.min_precision):
                continue
            got, why_not = _try(req, model, ps, backend, get_precision(pid))
            fits.extend(got)
            rejected.extend(why_not)
    if not fits:
        return NodePlan(node_type=req.name, hardware=req.hw.describe(), count=req.count,
                        objective=objective.name, choice=None, alternatives=[],
                        rejected=rejected, not_offered=not_offered,
                        shortfall=_shortfall(rejected))
    best = objective.pick(fits)
    best = best.model_copy(update={"why": _why(objective, best, model, ps)})
    alternatives = [_lost_to(c, best) for c in sorted(fits, key=objective.key, reverse=True)
                    if not _same(c, best)]
    return NodePlan(node_type=req.name, hardware=req.hw.describe(), count=req.count,
                    objective=objective.name, choice=best, alternatives=alternatives,
                    rejected=rejected, not_offered=not_offered, shortfall=None)


def _sizes(req: NodeRequest, backend: Backend, model: ModelArch) -> list[int]:
    if req.hw.is_cpu:
        return [1]
    sizes = [t for t in (1, 2, 4, 8) if t <= req.hw.gpus and req.hw.gpus % t == 0]
    if backend.parallelism == "tensor":
        sizes = [t for t in sizes if model.heads % t == 0]
    return sizes


def _layout(req: NodeRequest, backend: Backend, size: int) -> ReplicaLayout:
    if req.hw.is_cpu:
        return ReplicaLayout(req.hw, 1, "none")
    return ReplicaLayout(req.hw, size, backend.parallelism if size > 1 else "tensor")


def _try(req, model, ps, backend, precision) -> tuple[list[Choice], list[Rejection]]:
    pid, bid = precision.id, backend.id
    if not req.hw.is_cpu:
        gpu = req.hw.gpu
        min_sm = backend.min_sm(pid)
        if gpu.sm < min_sm:
            return [], [Rejection(
                precision=pid, backend=bid, layout=None, kind="unsupported",
                reason=f"{precision.display} on {backend.display} needs sm{min_sm}+, "
                       f"{gpu.id} is {gpu.arch}")]
        if precision.needs_bf16 and not gpu.bf16:
            return [], [Rejection(precision=pid, backend=bid, layout=None, kind="unsupported",
                                  reason=f"{gpu.id} has no BF16 support")]
    kv_types = backend.kv_cache_types(ps.kv_cache_dtype)
    unsupported = [(kv, backend.kv_unsupported(kv, req.hw)) for kv in kv_types]
    kv_types = [kv for kv, why in unsupported if why is None]
    if not kv_types:  # only where the spec forces one type: auto always has fp16
        return [], [Rejection(precision=pid, backend=bid, layout=None, kind="unsupported",
                              reason=f"kv_cache_dtype {ps.kv_cache_dtype}: {unsupported[0][1]}")]
    checkpoint, why_not = starting_point(backend, precision, req.checkpoints, req.hw, model)
    if why_not:
        return [], [Rejection(precision=pid, backend=bid, layout=None, kind="checkpoint",
                              reason=why_not)]
    weights, source = precision.weight_bytes(model)
    fits, last_fail = [], None
    for size in _sizes(req, backend, model):
        layout = _layout(req, backend, size)
        tried = []  # (kv type, its fit, KV bytes min_context needs) that did not fit
        for kv in kv_types:
            fit = mem.fit(layout, backend, model, weights, kv, ps.usable_memory_fraction)
            need_kv = ps.min_context * fit.kv_bytes_per_token
            if fit.weights_fit and fit.kv_bytes >= need_kv:
                fits.append(_choice(req, model, ps, backend, precision, layout, fit, source,
                                    kv, tried).model_copy(update={"checkpoint": checkpoint}))
                break
            tried.append((kv, fit, need_kv))
            if not fit.weights_fit:  # no cache type makes room for the weights
                last_fail = (layout, tried)
                break
        else:
            last_fail = (layout, tried)
    if fits or last_fail is None:
        return fits, []
    skipped = "; ".join(f"{kv} KV cache not tried: {why}" for kv, why in unsupported if why)
    return [], [_memory_rejection(precision, backend, ps, *last_fail, skipped)]


def _kv_sizes(tried) -> str:
    return ", ".join(f"{kv} {fit.kv_bytes_per_token:,.0f} B/token" for kv, fit, _ in tried)


def _memory_rejection(precision, backend, ps, layout, tried, skipped="") -> Rejection:
    """Why nothing fit, told from the most compact cache type tried (the closest miss)."""
    kv, fit, need_kv = tried[-1]
    per = "" if layout.hw.is_cpu else f" ({ps.usable_memory_fraction:.0%} of " \
        f"{layout.size}x {layout.hw.gpu.vram_gib:g} GiB)"
    total = fit.weights_bytes + fit.overhead_bytes + need_kv
    # The split is even, so weights not fitting on one device means the total is short too.
    short = total - fit.usable_bytes
    kind = "memory" if not fit.weights_fit else "context"
    tried_all = (f"; KV cache types tried: {_kv_sizes(tried)}" if len(tried) > 1 else "")
    reason = (f"needs {_gb(fit.weights_bytes)} of weights + {_gb(fit.overhead_bytes)} runtime"
              f" + {_gb(need_kv)} {kv} KV for {ps.min_context}-token context = {_gb(total)}, "
              f"{_gb(fit.usable_bytes)} usable{per}; short by {_gb(short)} "
              f"({int(short):,} bytes){tried_all}"
              + (f"; {skipped}" if skipped and fit.weights_fit else ""))
    return Rejection(precision=precision.id, backend=backend.id, layout=layout.describe(),
                     kind=kind, reason=reason, shortfall_bytes=int(short))


def _kv_note(kv: str, fit, tried, ps) -> str:
    """Why this KV-cache type: the least lossy that holds min_context, with what the less
    compact ones would have needed."""
    if not tried:
        return f"KV cache {kv} ({fit.kv_bytes_per_token:,.0f} B/token)"
    missed = "; ".join(f"{k} {f.kv_bytes_per_token:,.0f} B/token needs {_gb(need)}, "
                       f"{_gb(max(f.kv_bytes, 0))} left" for k, f, need in tried)
    return (f"KV cache {kv} ({fit.kv_bytes_per_token:,.0f} B/token), the least lossy that "
            f"holds {ps.min_context} tokens ({missed})")


def _choice(req, model, ps, backend, precision, layout, fit, source, kv="fp16",
            tried=()) -> Choice:
    sp = speeds(layout, backend, model, precision, fit.weights_bytes, fit.kv_bytes_per_token)
    seed_ctx = SEED_PROMPT + SEED_OUTPUT / 2
    batch = backend.concurrency(fit.kv_tokens, ps.typical_sequence, ps.min_context)
    batch = min(batch, req.max_batch) if req.max_batch else batch
    typical_ctx = ps.typical_sequence / 2
    replicas = 1 if req.hw.is_cpu else req.hw.gpus // layout.size
    batched = sp.decode_tokens_per_s(batch, typical_ctx)
    perf = PerfEstimate(
        single_stream_tokens_per_s=sp.decode_tokens_per_s(1, seed_ctx),
        single_stream_ceiling=sp.decode_tokens_per_s(1, seed_ctx, ceiling=True),
        batched_tokens_per_s=batched,
        batched_ceiling=sp.decode_tokens_per_s(batch, typical_ctx, ceiling=True),
        batch=batch,
        prefill_tokens_per_s=sp.prefill_tokens_per_s(),
        prefill_ceiling=sp.prefill_tokens_per_s(ceiling=True),
        decode_efficiency=decode_efficiency(backend.id),
        prefill_efficiency=1.0 if req.hw.is_cpu else prefill_efficiency(backend.id),
        chunked_prefill=backend.chunked_prefill,
    )
    memory = MemorySplit(
        usable_bytes=int(fit.usable_bytes), weights_bytes=int(fit.weights_bytes),
        weights_source=source, overhead_bytes=int(fit.overhead_bytes),
        kv_room_bytes=int(fit.kv_bytes), kv_bytes_per_token=int(fit.kv_bytes_per_token),
        kv_tokens=fit.kv_tokens, max_context=min(fit.kv_tokens, model.max_context),
        concurrent_sequences=fit.kv_tokens // ps.typical_sequence,
    )
    if req.hw.is_cpu:
        resources = {"CPU": float(req.hw.cpu.cores), gpu_group_resource(req.name): 1.0}
    else:
        resources = {"GPU": float(layout.size),
                     gpu_group_resource(req.name): layout.size / req.hw.gpus}
    return Choice(
        precision=precision.id, precision_display=precision.display,
        quality_rank=precision.rank, backend=backend.id,
        parallelism=layout.parallelism, gpus_per_replica=layout.size,
        replicas_per_node=replicas, memory=memory, perf=perf,
        speed_model=SpeedModel(**sp.__dict__), node_tokens_per_s=batched * replicas,
        replica_resources=resources, why="", kv_cache_dtype=kv,
        kv_note=_kv_note(kv, fit, tried, ps))


def _same(a: Choice, b: Choice) -> bool:
    return (a.precision, a.backend, a.gpus_per_replica) == (b.precision, b.backend,
                                                           b.gpus_per_replica)


def _why(objective, c: Choice, model: ModelArch, ps: PlannerSpec) -> str:
    start = (f"from {CHECKPOINTS[c.checkpoint]} (artifacts.sources.{c.checkpoint})"
             if c.checkpoint else "the spec names no checkpoints: its format assumed at hand")
    return (f"objective {objective.name} ({objective.description}): {c.precision_display} on "
            f"{BACKENDS[c.backend].display} {start}, {c.layout}, {c.replicas_per_node} "
            "replica(s) per "
            f"node; weights {_gb(c.memory.weights_bytes)} ({c.memory.weights_source}), KV room "
            f"{_gb(c.memory.kv_room_bytes)} = {c.memory.kv_tokens} tokens "
            f"(>= {ps.min_context} required); {c.kv_note}; est. "
            f"{c.node_tokens_per_s:.1f} tok/s per node")


def _lost_to(c: Choice, best: Choice) -> Rejection:
    if c.quality_rank < best.quality_rank:
        reason = f"lower precision than {best.precision_display}"
    elif c.node_tokens_per_s < best.node_tokens_per_s:
        reason = (f"fewer tokens/s per node ({c.node_tokens_per_s:.1f} vs "
                  f"{best.node_tokens_per_s:.1f})")
    elif c.quality_rank > best.quality_rank:
        reason = (f"higher precision but under the objective's throughput bar "
                  f"({c.node_tokens_per_s:.1f} vs {best.node_tokens_per_s:.1f} tok/s)")
    else:
        reason = "ties with the choice; backend preference order decides"
    return Rejection(precision=c.precision, backend=c.backend, layout=c.layout,
                     kind="not_chosen", reason=reason)


def _shortfall(rejected: list[Rejection]) -> str:
    sized = [r for r in rejected if r.shortfall_bytes is not None]
    if not sized:
        return "no allowed precision runs on this hardware (see the rejected list)"
    r = min(sized, key=lambda r: r.shortfall_bytes)
    return (f"cannot fit: closest is {get_precision(r.precision).display} on "
            f"{BACKENDS[r.backend].display} ({r.layout}), short by {_gb(r.shortfall_bytes)}")
