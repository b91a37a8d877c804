"""The Serve application builder that a RayService's serveConfigV2 names:

  import_path: orchestrator.serve.entry:app
  args: {plan: <Plan JSON>, model_name: ..., store: /artifacts, policy: slo_aware,
         serving: <the spec's serving section>}

API keys are read here, in the cluster, from the variable or file `serving` names (on
Kubernetes: a Secret exposed to the head pod), and only their digests reach the ingress.

The plan comes from `orchestrator helm-values` (never re-derived in the cluster); each
pool's artifact is the newest one in the store built for its node type, precision and
backend (`orchestrator build --address ...` against the cluster puts it there).
"""

from __future__ import annotations

from orchestrator.build.store import ArtifactStore
from orchestrator.config import ServingSpec
from orchestrator.planner.plan import Plan


def newest_artifacts(plan: Plan, store: str) -> dict[str, str]:
    st = ArtifactStore(store)
    found: dict[str, tuple[float, str]] = {}
    for m in st.list():
        for n in plan.pools():
            c = n.choice
            if (m.node_type, m.precision, m.backend, m.model) == (
                    n.node_type, c.precision, c.backend, plan.model):
                if m.built_at > found.get(n.node_type, (0, ""))[0]:
                    found[n.node_type] = (m.built_at, str(st.path(m.key)))
    return {k: v[1] for k, v in found.items()}


def app(args: dict):
    from orchestrator.serve.app import build_app
    from orchestrator.serve.auth import digest, load_keys

    plan = Plan.model_validate_json(args["plan"]) if isinstance(args["plan"], str) \
        else Plan.model_validate(args["plan"])
    engine = args.get("engine")
    if engine == "simulated":
        artifacts = {}
    elif args.get("artifacts"):  # `orchestrator up` built them and says where
        artifacts = dict(args["artifacts"])
    else:
        artifacts = newest_artifacts(plan, args["store"])
    missing = [n.node_type for n in plan.pools() if n.node_type not in artifacts]
    if missing and engine != "simulated":
        raise RuntimeError(f"no built artifact in {args.get('store')} for "
                           f"{', '.join(missing)}: run `orchestrator build CLUSTER.yaml "
                           "--address ...` first")
    serving = ServingSpec.model_validate(args.get("serving") or {})
    keys = load_keys(serving.api_keys_env, serving.api_keys_file)
    digests = [digest(k) for k in keys] + list(args.get("key_digests") or [])
    return build_app(plan, model_name=args.get("model_name", plan.model),
                     max_waiting=serving.max_waiting, max_body_bytes=serving.max_body_bytes,
                     max_context=serving.max_context,
                     key_digests=digests, public_paths=serving.public_paths,
                     artifacts=artifacts, engine=engine, policy=args.get("policy"),
                     slo_ttft_s=float(args.get("slo_ttft_s", 2.0)),
                     slo_tpot_s=float(args.get("slo_tpot_s", 0.1)),
                     time_scale=float(args.get("time_scale", 1.0)),
                     scaling=args.get("scaling"), serving=serving)
