"""Shared runtime of the privacy services: codec, dead letters, outbox, crypto, audit, metrics, health.

Each concern lives in one module; services import from here and never copy it.
"""
