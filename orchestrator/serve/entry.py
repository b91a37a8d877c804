"""The Serve application builder that `up` and a RayService's serveConfigV2 both name:

  import_path: orchestrator.serve.entry:app
  args: serve/contract.AppArgs (plan, model_name, store or artifacts, policy, serving, ...)

API keys are read here, in the cluster, from the variable or file `serving` names (on
Kubernetes: a Secret exposed to the head pod), and only their digests reach the ingress.

The plan comes from `up` or `orchestrator helm-values` (never re-derived in the cluster);
each pool's artifact is the one `up` built, or else the newest one in the store built for
its node type, precision and backend (`orchestrator build --address ...` puts it there).
"""

from __future__ import annotations

from orchestrator.build.store import ArtifactStore
from orchestrator.planner.plan import Plan
from orchestrator.serve.contract import AppArgs


def newest_artifacts(plan: Plan, store: str) -> dict[str, str]:
    st = ArtifactStore(store)
    found = {n.node_type: st.find(n.node_type, plan.model, n.choice.precision,
                                  n.choice.backend) for n in plan.pools()}
    return {k: str(v) for k, v in found.items() if v is not None}


def resolve(args: AppArgs) -> AppArgs:
    """The arguments with every pool's artifact and every API key's digest filled in."""
    from orchestrator.serve.auth import digest, load_keys

    update: dict = {}
    if args.engine != "simulated" and not args.artifacts:
        found = newest_artifacts(args.plan, args.store) if args.store else {}
        missing = [n.node_type for n in args.plan.pools() if n.node_type not in found]
        if missing:
            raise RuntimeError(f"no built artifact in {args.store} for {', '.join(missing)}: "
                               "run `orchestrator build CLUSTER.yaml --address ...` first")
        update["artifacts"] = found
    keys = load_keys(args.serving.api_keys_env, args.serving.api_keys_file)
    if keys:
        update["key_digests"] = [digest(k) for k in keys] + list(args.key_digests)
    return args.model_copy(update=update)


def app(args: dict):
    from orchestrator.serve.app import build_app

    return build_app(resolve(AppArgs.model_validate(args)))
