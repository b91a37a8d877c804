"""The routing policy of one request: the deployment's, or (with serving.policy_header)
the one its ``x-orchestrator-policy`` header names, for comparing policies on one live
deployment (`orchestrator bench --trace`). One instance per policy name, kept for the
ingress's life: policies have state (round-robin's turn, their random generators).

With the setting off a request that sends the header gets a 400 rather than the
deployment's policy: a comparison that silently measured one policy twice would mislead.
"""

from __future__ import annotations

from orchestrator.defaults import POLICY_HEADER
from orchestrator.router import policies
from orchestrator.serve.openai_api import ApiError


class PolicyChoice:
    def __init__(self, default: str | None, per_request: bool):
        self.default = default or policies.DEFAULT_POLICY
        self.per_request = per_request
        self.instances = {self.default: policies.make(self.default)}

    @property
    def deployment_policy(self) -> policies.Policy:
        return self.instances[self.default]

    def of(self, header: str | None) -> policies.Policy:
        """The policy for a request whose header is ``header`` (None: not sent)."""
        if header is None:
            return self.deployment_policy
        if not self.per_request:
            raise ApiError(400, f"{POLICY_HEADER} is off on this endpoint; set serving."
                                "policy_header: true in the cluster spec to choose a routing "
                                "policy per request", "invalid_request_error", POLICY_HEADER,
                           "policy_header_off")
        name = header.strip().lower()
        if name not in policies.POLICIES:
            raise ApiError(400, f"{POLICY_HEADER} {header!r} is not a routing policy; valid: "
                                f"{', '.join(policies.POLICIES)}", "invalid_request_error",
                           POLICY_HEADER, "unknown_policy")
        if name not in self.instances:
            self.instances[name] = policies.make(name)
        return self.instances[name]
