"""Consent service settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from pydantic import Field

from privacy_runtime.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    policy_url: str = "https://www.isopartner.se/integritetspolicy"
    #: How often the ledger's new seals are anchored in the audit chain (services/consent/seals.py).
    ledger_anchor_seconds: float = 60.0
    #: Subjects whose profile and consents the decision API keeps in memory (0: every decision from SQL);
    #: kept fresh by PostgreSQL notifications (services/consent/decision_cache.py).
    decision_cache_subjects: int = Field(default=200_000, ge=0)
    #: How often the cache's LISTEN connection is checked; one that does not answer within
    #: `decision_cache_timeout_seconds` is dropped, and the cache with it, until it is back.
    decision_cache_check_seconds: float = Field(default=1.0, gt=0)
    decision_cache_timeout_seconds: float = Field(default=2.0, gt=0)
