"""Grafana dashboards: dashboards.py builds the JSON files in this folder."""
