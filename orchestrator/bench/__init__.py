"""Benchmark client for a live OpenAI-compatible endpoint."""
