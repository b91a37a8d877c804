"""The only package that imports Ray Serve: pools, the router glue, the ingress, the app."""
