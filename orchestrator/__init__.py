"""Serve one LLM from one OpenAI-compatible endpoint across a cluster of unequal GPU machines."""

__version__ = "0.1.0"
