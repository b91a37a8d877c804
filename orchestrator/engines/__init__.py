"""Engines: the interface every backend's engine implements (base.Engine, what flows
through it, chat rendering) and the simulated engine. The real engines live with their
backends (orchestrator/backends/<id>.py)."""
