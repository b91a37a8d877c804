"""Ray Serve request router for pool deployments.

The cross-pool decision is made once, by the ingress, with the project's routing policy;
this router only honours it: it sends the request to the replica the ingress named, and
publishes each pool's replicas (ids, nodes, routing stats) to the ingress in the same
process. If the named replica is gone, any candidate will do (the ingress retries
failures before the first token anyway).
"""

from __future__ import annotations

import importlib
from typing import Any

from ray.serve.request_router import FIFOMixin, RequestRouter

# deployment name -> {replica unique id: {"node_id": ..., "stats": {...}}}
REPLICAS: dict[str, dict[str, dict[str, Any]]] = {}


def registry() -> dict[str, dict[str, dict[str, Any]]]:
    # Serve ships the router class and the ingress class to their process by value, each
    # with its own copy of module globals; the imported module's dict is the shared one.
    return importlib.import_module(__name__).REPLICAS


class PoolRouter(FIFOMixin, RequestRouter):
    def initialize_state(self, **kwargs) -> None:
        pass

    def update_replicas(self, replicas) -> None:
        super().update_replicas(replicas)
        self._publish(replicas)

    def _publish(self, replicas) -> None:
        registry()[self._deployment_id.name] = {
            r.replica_id.unique_id: {"node_id": r.node_id, "stats": r.routing_stats or {}}
            for r in replicas}

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        self._publish(list(self.curr_replicas.values()))
        target = None
        if pending_request is not None and pending_request.args:
            target = getattr(pending_request.args[0], "target_replica", None)  # PoolRequest
        if target:
            chosen = [r for r in candidate_replicas if r.replica_id.unique_id == target]
            if chosen:
                return [chosen]
        return [candidate_replicas]
