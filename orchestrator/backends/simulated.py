"""The simulated engine as a serving target: a timing model that stands in for whichever
backend the plan chose (its speeds, KV capacity and batch), for emulated clusters and tests
where only timing matters. Not a backend the planner can choose, so not in BACKENDS."""

from __future__ import annotations

from orchestrator.backends.base import Backend


class Simulated(Backend):
    id, display = "simulated", "simulated engine (timing model)"
    engine_class = "orchestrator.engines.simulated:SimulatedEngine"
    # its placeholder tokens follow no sampling setting, schema or tool: it honours none
    feature_notes = {"*": "a timing model: placeholder tokens, no sampling"}

    def __init__(self, time_scale: float = 1.0):
        self.time_scale = time_scale

    def engine_args(self, n, model, artifact):
        from orchestrator.backends import get_backend

        c = n.choice
        return {"speeds": c.speed_model.speeds(), "kv_capacity_tokens": c.memory.kv_tokens,
                "max_batch": get_backend(c.backend).replica_batch(c), "time_scale": self.time_scale}

    def placement(self, n):
        # a timing model holds no device; the group resource still pins it to its node type
        actor, (first,) = super().placement(n)
        first = {k: v for k, v in first.items() if k != "GPU"} | {"CPU": 0.0}
        return {**actor, "num_cpus": 0.0, "num_gpus": 0.0}, [first]
