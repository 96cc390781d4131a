"""Deployment assets: Kubernetes manifests, alert rules, dashboards and the tools that check them."""
