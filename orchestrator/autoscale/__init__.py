"""Autoscaling policies (pure, no Ray)."""
