"""Why a pool has fewer replicas than a moment ago: the ingress remembers which replica ran
on which node, and when one leaves its listing, whether its node is still in the cluster."""

from __future__ import annotations

import time


class Losses:
    def __init__(self):
        self.seen: dict[str, dict[str, str | None]] = {}  # deployment -> replica -> node
        self.last: dict[str, dict] = {}  # deployment -> its latest loss

    def update(self, listing: dict[str, dict[str, dict]], alive: set[str] | None) -> None:
        """`listing`: deployment -> replica -> {"node_id": ...}; `alive`: the cluster's live
        node ids (None where unknown)."""
        for dep, reps in listing.items():
            now = {rid: info.get("node_id") for rid, info in reps.items()}
            for rid, node in self.seen.get(dep, {}).items():
                if rid in now:
                    continue
                gone = alive is not None and node is not None and node not in alive
                self.last[dep] = {
                    "replica": rid, "node_id": node, "at": time.time(),
                    "why": (f"its node {node[:8]} left the Ray cluster (host down, cut off or "
                            "its raylet stopped)") if gone else
                           "the replica stopped (scaled down, redeployed or crashed)"}
            self.seen[dep] = now

    def of(self, dep: str) -> dict | None:
        return self.last.get(dep)
