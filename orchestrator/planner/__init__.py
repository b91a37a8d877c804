"""Capacity planner: pure functions from a cluster spec to a Plan (no Ray)."""
