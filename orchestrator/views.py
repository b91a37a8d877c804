"""Rich renderings of inventories and plans (the CLI prints these; nothing here decides)."""

from __future__ import annotations

import time as _time

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.backends import BACKENDS
from orchestrator.defaults import gpu_group_resource
from orchestrator.hardware.catalog import GB, GIB
from orchestrator.hardware.discovery import Inventory
from orchestrator.hardware.resources import NodeResources
from orchestrator.planner.plan import NodePlan, Plan


MAX_ALTERNATIVES = 12


def _table(*columns: str, title: str | None = None, whole: tuple[str, ...] = ()) -> Table:
    """A table that fits 100 columns: no vertical rules, no edge padding; the `whole`
    columns (names) never wrap, the others fold where the terminal is narrow."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c in whole)
    return t


def _gb(b: float) -> str:
    return f"{b / GB:.2f} GB"


def inventory_view(inv: Inventory) -> Group:
    head = (f"{inv.hostname}: {inv.cpu_cores} CPU cores, {inv.memory_bytes / GIB:.1f} GiB RAM"
            + (f", driver {inv.driver_version}, CUDA {inv.cuda_version}"
               if inv.driver_version else ""))
    parts: list = [Text(head, style="bold")]
    if inv.explanation:
        parts.append(Text(inv.explanation, style="yellow"))
    if inv.gpus:
        t = _table("#", "name", "catalog id", "memory", "cc", "bandwidth", "PCI bus",
                   "NVLink peers", title="GPUs", whole=("#", "memory", "bandwidth"))
        for g in inv.gpus:
            t.add_row(str(g.index), g.name, g.model_id, f"{g.memory_bytes / GIB:.1f} GiB",
                      g.compute_capability,
                      f"{g.bandwidth_gbs:g} GB/s" if g.bandwidth_gbs else "-", g.bus_id,
                      ",".join(map(str, g.nvlink_peers)) or "-")
        parts.append(t)
        gt = _table("group type", "GPUs", "link", "Ray resource", title="GPU groups")
        for g in inv.groups:
            gt.add_row(g.type, ",".join(map(str, g.indices)), g.interconnect,
                       gpu_group_resource(g.type))
        parts.append(gt)
    for w in inv.warnings:
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)


def resources_view(res: NodeResources) -> Group:
    parts = [Text("ray start flags for this node:", style="bold"),
             Text(" ".join(res.ray_start_args())),
             Text("e.g. " + res.command())]
    parts += [Text(f"note: {n}", style="yellow") for n in res.notes]
    return Group(*parts)


# The plan's columns: all of them with --wide; else the ones that decide a deployment, so
# the table fits 100 columns (the ceilings and hardware are in --wide, --explain and --json)
PLAN_COLUMNS = ("node type", "hardware", "precision", "backend", "layout", "replicas",
                "weights", "KV room (cache)", "max ctx", "1-stream tok/s (ceiling)",
                "batched tok/s (ceiling)", "prefill tok/s")
PLAN_COMPACT = ("node type", "precision", "backend", "layout", "replicas", "KV room (cache)",
                "batched tok/s", "prefill tok/s")
SHORT_HEADERS = {"KV room (cache)": "KV room", "batched tok/s": "tok/s",
                 "prefill tok/s": "prefill", "replicas": "repl."}


def _plan_cells(n: NodePlan, wide: bool) -> dict[str, str | Text]:
    c = n.choice
    if c is None:
        return {"node type": n.node_type, "hardware": n.hardware,
                "precision": Text("cannot fit", style="red"), "replicas": "0"}
    p = c.perf
    return {
        "node type": n.node_type, "hardware": n.hardware, "precision": c.precision_display,
        "backend": BACKENDS[c.backend].display, "layout": c.layout,
        "replicas": f"{c.replicas_per_node}/node x {n.count} = {n.replicas}" if wide
        else str(n.replicas),
        "weights": _gb(c.memory.weights_bytes),
        "KV room (cache)": f"{_gb(c.memory.kv_room_bytes)} ({c.kv_cache_dtype})" if wide
        else f"{_gb(c.memory.kv_room_bytes)} {c.kv_cache_dtype}",
        "max ctx": str(c.memory.max_context),
        "1-stream tok/s (ceiling)":
            f"{p.single_stream_tokens_per_s:.1f} ({p.single_stream_ceiling:.1f})",
        "batched tok/s (ceiling)": f"{p.batched_tokens_per_s:.0f} @{p.batch} "
                                   f"({p.batched_ceiling:.0f})",
        "batched tok/s": f"{p.batched_tokens_per_s:.0f} @{p.batch}",
        "prefill tok/s": f"{p.prefill_tokens_per_s:.0f} ({p.prefill_ceiling:.0f})" if wide
        else f"{p.prefill_tokens_per_s:.0f}"}


def plan_view(plan: Plan, explain: bool = False, wide: bool = False) -> Group:
    floor = plan.min_precision or "none"
    # a node type may set its own objective; name those, or the header would misstate them
    own = [f"{n.node_type}: {n.objective}" for n in plan.node_types
           if n.objective != plan.objective]
    objective = plan.objective + (f" ({', '.join(own)})" if own else "")
    parts: list = [Text(
        f"Plan for {plan.model_display} on cluster {plan.cluster!r}: objective {objective}, "
        f"min context {plan.min_context}, precision floor {floor}, KV {plan.kv_cache_dtype}",
        style="bold")]
    columns = PLAN_COLUMNS if wide else PLAN_COMPACT
    # compact: no vertical rules and short headers; names stay whole, numbers wrap first
    t = Table(title="Chosen layout per node type",
              **({} if wide else {"box": box.SIMPLE_HEAD, "pad_edge": False,
                                  "collapse_padding": True}))
    for col in columns:
        t.add_column(col if wide else SHORT_HEADERS.get(col, col), overflow="fold",
                     no_wrap=col in ("node type", "precision"))
    for n in plan.node_types:
        cells = _plan_cells(n, wide)
        t.add_row(*(cells.get(col, "-") for col in columns))
    parts.append(t)
    for n in plan.node_types:
        if n.choice is None:
            parts.append(Text(f"{n.node_type}: {n.shortfall}", style="red"))
        elif explain:
            parts.append(Text(f"{n.node_type}: {n.choice.why}"))
    if explain:
        for n in plan.node_types:
            parts.append(_explain(n))
    return Group(*parts)


def _explain(n: NodePlan):
    t = Table(title=f"{n.node_type}: alternatives and rejections")
    for col in ("precision", "backend", "layout", "verdict", "reason"):
        t.add_column(col, overflow="fold")
    for r in n.alternatives[:MAX_ALTERNATIVES]:
        t.add_row(r.precision, r.backend or "-", r.layout or "-", "fits, not chosen", r.reason)
    if len(n.alternatives) > MAX_ALTERNATIVES:
        t.add_row("...", "", "", "fits, not chosen",
                  f"{len(n.alternatives) - MAX_ALTERNATIVES} more, best first in --json")
    unavailable = [r.precision for r in n.rejected if r.kind == "unavailable"]
    for r in n.rejected:
        if r.kind != "unavailable":
            t.add_row(r.precision, r.backend or "-", r.layout or "-", r.kind, r.reason)
    rows: list = [t]
    if unavailable:
        rows.append(Text(f"  no checkpoint is made for this model in: {', '.join(unavailable)}",
                         style="dim"))
    for line in n.not_offered:
        rows.append(Text(f"  not offered by {line}", style="dim"))
    return Group(*rows)


def simulation_view(plan: Plan, results, requests: int, slo_ttft: float, slo_tpot: float):
    sweep = any(r.goodput_req_s is not None for r in results)
    rates = {f"{r.summary.rate_req_s:.2f}" for r in results if not sweep}
    # every policy replays the same arrivals: one offered rate, said once, saves a column
    at = f" at {rates.pop()} req/s" if len(rates) == 1 else ""
    parts: list = [Text(
        f"Simulated {requests} requests{at} on {plan.cluster!r} ({plan.model_display}); SLO: "
        f"TTFT {slo_ttft:g} s, TPOT {slo_tpot * 1000:g} ms (simulated engines: timing "
        f"models, not measurements)", style="bold")]
    cols = (["policy", "goodput req/s", "sweep points (req/s: attainment)"] if sweep else
            ["policy"] + (["req/s"] if not at else []) + [
                "SLO met", "out tok/s", "TTFT s p50 p90 p99", "TPOT ms p50 p90 p99", "rejected",
                "tokens by precision", "replica s"])
    t = _table(*cols, whole=("policy", "req/s"))
    for r in results:
        if sweep:
            pts = ", ".join(f"{p['rate_req_s']:.2f}: {p['attainment']:.0%}"
                            for p in sorted(r.sweep, key=lambda p: p["rate_req_s"]))
            t.add_row(r.policy, f"{r.goodput_req_s:.3f}", pts)
            continue
        s = r.summary
        t.add_row(
            r.policy, *([f"{s.rate_req_s:.2f}"] if not at else []), f"{s.slo_attainment:.1%}",
            f"{s.throughput_tok_s:.0f}",
            # spaced, so that a narrow terminal wraps between percentiles, not inside one
            " ".join(f"{v:.3g}" for v in s.ttft_s.values()),
            " ".join(f"{v * 1000:.0f}" for v in s.tpot_s.values()),
            str(s.rejected),
            "\n".join(f"{k} {v:.0%}" for k, v in s.precision_token_share.items()),
            f"{s.replica_seconds:.0f}")
    parts.append(t)
    return Group(*parts)


def bench_view(r) -> Group:
    head = (f"{r.mode} benchmark of {r.url} ({r.model}): {r.requests} requests, "
            f"{r.errors} errors, {r.runs} runs at concurrency {r.concurrency}, prompt "
            f"{r.prompt_tokens} tokens")
    t = _table("metric", "value", whole=("metric",))

    def fmt(v, unit="", scale=1.0):
        return "-" if v is None else f"{v * scale:.2f}{unit}"

    t.add_row("TTFT p50 / p90 / p99", " / ".join(fmt(v, " s") for v in r.ttft_s.values()) or "-")
    t.add_row("TPOT p50 / p90 / p99",
              " / ".join(fmt(v, " ms", 1000) for v in r.tpot_s.values()) or "-")
    t.add_row("decode tok/s per stream (median)", fmt(r.decode_tok_s_median))
    t.add_row("end-to-end tok/s per stream (median)", fmt(r.e2e_tok_s_median))
    t.add_row("aggregate tok/s (median of runs)", fmt(r.aggregate_tok_s_median))
    t.add_row("output tokens per request (median)", fmt(r.completion_tokens_median))
    parts: list = [Text(head, style="bold"), t]
    for kind, n in r.error_kinds.items():
        parts.append(Text(f"error x{n}: {kind}", style="red"))
    return Group(*parts)


def trace_bench_view(r) -> Group:
    head = (f"trace benchmark of {r.url} ({r.model}): {r.requests} requests of {r.trace} per "
            f"policy at {r.offered_rate_req_s:.2f} req/s each, token scale {r.token_scale:g}, "
            f"SLO TTFT {r.slo_ttft_s:g} s / TPOT {r.slo_tpot_s * 1000:g} ms")
    t = _table("policy", "SLO met", "TTFT s p50 p90 p99", "TPOT p50 ms", "errors",
               "requests per pool", whole=("policy", "SLO met"))
    for p in r.policies:
        t.add_row(p.policy, f"{p.slo_attainment:.1%}",
                  " ".join(f"{v:.3g}" for v in p.ttft_s.values()) or "-",
                  "-" if p.tpot_p50_s is None else f"{p.tpot_p50_s * 1000:.0f}",
                  str(p.errors), "\n".join(f"{k} {v}" for k, v in p.pools.items()) or "-")
    parts: list = [Text(head, style="bold"), t]
    for p in r.policies:
        for kind, n in p.error_kinds.items():
            parts.append(Text(f"{p.policy}: error x{n}: {kind}", style="red"))
    return Group(*parts)


def build_specs_view(specs, store) -> Group:
    # the Ray resource is gpu_group:<node type> (in --json); the source path folds
    t = _table("node type", "backend", "precision", "arch", "TP", "source", "what",
               title=f"Build specs (store {store})", whole=("node type", "precision", "TP"))
    for s in specs:
        t.add_row(s.node_type, s.backend, s.precision, s.arch, str(s.tp),
                  f"{s.source_kind}: {s.source or 'NOT SET'}", s.describe())
    return Group(t)


def build_outcomes_view(outcomes) -> Group:
    t = _table("node type", "result", "seconds", "artifact", "built on", title="Builds",
               whole=("node type", "result", "seconds"))
    for o in outcomes:
        result = Text("cache hit" if o.cached else "built", style="green") if o.ok \
            else Text("failed", style="red")
        t.add_row(o.node_type, result, f"{o.seconds:.1f}", o.path or "-",
                  f"{o.host or '-'} {(o.node_id or '')[:8]}")
    return Group(t, *_failures((o.node_type, o.error) for o in outcomes if not o.ok))


def _failures(errors) -> list[Text]:
    """Each error in full under its table, where a cell would fold it out of shape."""
    return [Text(f"{who}: {why}", style="red") for who, why in errors]


def transfers_view(transfers) -> Group:
    """Which node got its node type's artifact from which peer, and how fast."""
    t = _table("node type", "node", "result", "from", "MB", "seconds", "MB/s",
               title="Artifacts on every node (pulled from a peer through Ray)",
               whole=("node type", "node", "from", "MB", "seconds", "MB/s"))
    for x in transfers:
        result = (Text("had it", style="green") if x.ok and not x.source
                  else Text("pulled", style="green") if x.ok
                  else Text("failed", style="red"))
        t.add_row(x.node_type, x.node_id[:8], result, x.source[:8] or "-",
                  f"{x.bytes / 1e6:.1f}", f"{x.seconds:.2f}", f"{x.mb_per_s:.1f}")
    return Group(t, *_failures((f"{x.node_type} on {x.node_id[:8]}", x.error)
                               for x in transfers if not x.ok))


def artifacts_view(store, items) -> Group:
    # the key's first 12 hex digits name it for `artifacts verify`; --json has it whole
    t = _table("key", "node type", "model", "precision", "backend", "arch", "size", "built",
               title=f"Artifacts in {store.root}", whole=("key", "node type"))
    for m in items:
        size = sum(f.bytes for f in m.files.values())
        t.add_row(m.key[:12], m.node_type, m.model, m.precision,
                  f"{m.backend} {m.backend_version}", m.arch, f"{size / 1e6:.1f} MB",
                  _time.strftime("%Y-%m-%d %H:%M", _time.localtime(m.built_at)))
    parts: list = [t]
    leftovers = store.temp_dirs()
    if leftovers:
        parts.append(Text(f"{len(leftovers)} leftover(s) of interrupted builds; "
                          "`orchestrator artifacts gc` removes them", style="yellow"))
    return Group(*parts)


def _engine_state(p: dict, serve_status: str) -> str:
    """loading | ready | failed, with the restarts and the last load's seconds."""
    if "state" not in p:
        return "-"
    # Serve gave up on a pool whose last replica died before it could say so
    out = "failed" if serve_status == "DEPLOY_FAILED" else p["state"]
    if p.get("load_s") is not None:
        out += f", loaded in {p['load_s']:.0f} s"
    if p.get("restarts"):
        out += f", {p['restarts']} restart(s)"
    return out


def status_view(serve_st: dict, base: str, pools: dict, autoscaling: dict | None = None,
                ) -> Group:
    parts: list = [Text(f"application: {serve_st['status']}  endpoint: {base}/v1",
                        style="bold")]
    # Serve's status over its replicas' states, and waiting/running in one cell: a
    # deployment name, its engine state and the numbers fit 100 columns that way
    t = _table("deployment", "precision", "Serve (replicas)", "engine", "nodes", "wait/run",
               "tok/s", title="Pools", whole=("deployment", "precision", "wait/run", "tok/s"))
    failures = []
    for name, d in serve_st["deployments"].items():
        p = pools.get(name, {})
        reps = p.get("replicas", [])
        t.add_row(name, p.get("precision", "-"),
                  "\n".join([d["status"]] + [f"{k} {v}" for k, v in d["replicas"].items()]),
                  _engine_state(p, d["status"]),
                  ", ".join(sorted({(r.get("node_id") or "?")[:8] for r in reps})) or "-",
                  f"{sum(r['waiting'] for r in reps)}/{sum(r['running'] for r in reps)}",
                  f"{sum(r['tokens_per_s'] for r in reps):.1f}")
        why = p.get("reason") or p.get("last_failure")
        if why:
            failures.append(f"{name}: {why}")
        lost = p.get("last_lost")
        if lost:
            ago = max(0, int(_time.time() - lost["at"]))
            failures.append(f"{name}: lost replica {lost['replica'][:8]} {ago} s ago: "
                            f"{lost['why']}")
    parts.append(t)
    for line in failures:  # the reason in full: a table cell would fold it out of sight
        parts.append(Text(f"{line}", style="red"))
    if autoscaling:
        a = _table("deployment", "current", "desired", "min", "max", "why",
                   title="Autoscaling (current, desired, bounds and why)",
                   whole=("deployment",))
        for name, d in autoscaling["pools"].items():
            a.add_row(name, str(d["current"]), str(d["desired"]), str(d["min"]),
                      str(d["max"]), d["reason"])
        parts.append(a)
    return Group(*parts)
