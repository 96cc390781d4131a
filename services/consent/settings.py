"""Consent service settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from privacy_runtime.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    #: How long a downstream system has to acknowledge a suppress/revoke command.
    command_respond_within_seconds: float = 7 * 86400
    #: First re-send after this long without an ack; doubles per attempt, capped below.
    command_resend_base_seconds: float = 30.0
    command_resend_max_seconds: float = 6 * 3600
    policy_url: str = "https://www.isopartner.se/integritetspolicy"
