"""GPU catalog, NVML discovery, GPU groups and the Ray resources of a node."""
