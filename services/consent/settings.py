"""Consent service settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from privacy_runtime.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    policy_url: str = "https://www.isopartner.se/integritetspolicy"
    #: How often the ledger's new seals are anchored in the audit chain (services/consent/seals.py).
    ledger_anchor_seconds: float = 60.0
