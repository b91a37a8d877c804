"""Per-node-type engine artifacts: build specs from the plan, Ray build tasks (each runs
its backend's `build`, backends/<id>.py), the content-addressed artifact store."""
