"""Error classes: user errors (bad input, fixable by the user) versus faults (ours or an
engine's)."""


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


class MissingExtraError(UserError):
    """A backend's package is not installed where it is needed (a build node, a replica)."""

    def __init__(self, package: str, extra: str, where: str = "the build node"):
        self.package, self.extra = package, extra
        super().__init__(f"{package} is not installed on {where}: "
                         f"pip install 'orchestrator[{extra}]'")

    def __reduce__(self):  # crosses Ray's process boundary with its arguments
        return (type(self), (self.package, self.extra))


class BuildFailed(OrchestratorError):
    """A backend's build tool ran and failed."""


class Deprecated(DeprecationWarning):
    """An old spelling (a spec key, a keyword) that still works; the CLI prints these."""
