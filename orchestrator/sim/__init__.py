"""Discrete-event simulation of a planned cluster over the live router's own policies."""
