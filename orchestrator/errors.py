"""Error classes: user errors (bad input, fixable by the user) versus faults (our or an engine's)."""


class OrchestratorError(Exception):
    """Base class of every error the project raises on purpose."""


class UserError(OrchestratorError):
    """Bad input from the user; the message names the value and the fix."""


class SpecError(UserError):
    """A cluster spec file that does not validate."""


class UnknownNameError(UserError):
    """A name (GPU, model, precision, backend, policy) that no registry holds."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")


class NoFeasiblePlanError(UserError):
    """Nothing fits on any node type of the cluster."""
