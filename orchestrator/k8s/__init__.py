"""Kubernetes: Helm values for the KubeRay RayService chart, from the Plan."""
