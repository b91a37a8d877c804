"""How far the simulated replicas' true speed is from the plan's estimate.

The router estimates with the planner's timing model; real replicas run faster or slower
than it says. A scenario makes each node type's replicas run at ``1 + error`` times the
planned speed (``-0.25``: a quarter slower) and every phase off by seeded log-normal noise,
so a policy is judged on a model it cannot trust. The router corrects from what replicas
measure, as live (router/ledger.py), never from the error itself.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from orchestrator.errors import UserError

DEFAULT_STEP_NOISE = 0.1  # sd of log(phase duration) when an error is given


@dataclass(frozen=True)
class SpeedError:
    per_type: dict[str, float] = field(default_factory=dict)  # node type -> relative error
    step_noise: float = 0.0
    seed: int = 0

    def factor(self, node_type: str) -> float:
        return 1.0 + self.per_type.get(node_type, 0.0)

    def replica_seed(self, replica_id: str) -> int:
        return zlib.crc32(f"{self.seed}:{replica_id}".encode())

    def describe(self) -> str:
        if not self.per_type and not self.step_noise:
            return "none"
        types = ", ".join(f"{t} {e:+.0%}" for t, e in sorted(self.per_type.items()))
        return f"{types or 'planned speed'}; noise {self.step_noise:.0%} per phase"

    @classmethod
    def parse(cls, text: str | None, node_types: list[str], *, seed: int = 0,
              step_noise: float | None = None) -> "SpeedError":
        """``0.25``: each node type a quarter faster or slower than planned, the sign drawn
        from ``seed``; ``a100-4x=-0.25,rtx3090-2x=0.25``: exactly those; none: no error."""
        if not text:
            return cls(step_noise=step_noise or 0.0, seed=seed)
        per: dict[str, float] = {}
        try:
            if "=" not in text:
                e = float(text)
                rng = random.Random(seed)
                per = {t: e * rng.choice((-1, 1)) for t in sorted(node_types)}
            else:
                for part in text.split(","):
                    name, _, value = part.partition("=")
                    per[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--speed-error {text!r}: give a fraction (0.25) or "
                            "TYPE=FRACTION pairs (a100-4x=-0.25,rtx3090-2x=0.25)") from None
        unknown = set(per) - set(node_types)
        if unknown:
            raise UserError(f"--speed-error: {', '.join(sorted(unknown))} is not a node type "
                            f"that serves; serving: {', '.join(node_types)}")
        bad = {t: e for t, e in per.items() if not -0.9 <= e <= 9}
        if bad:
            raise UserError(f"--speed-error: {bad} out of range; an error is a fraction of the "
                            "planned speed between -0.9 and 9")
        noise = DEFAULT_STEP_NOISE if step_noise is None else step_noise
        return cls(per, noise, seed)
