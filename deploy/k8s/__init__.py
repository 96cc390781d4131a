"""Kustomize base and overlays; generate.py writes the generated parts of the base."""
