"""Per-node-type engine artifacts: build specs from the plan, builders, the artifact store."""
