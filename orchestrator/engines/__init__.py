"""Engines: one interface (base.Engine), one registry (registry.make)."""
