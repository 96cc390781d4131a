"""Privacy center settings: the contract's names (PRIVACY_CENTER_WEB_PORT, PRIVACY_CENTER_URL) plus
where the services it reads are and how careful the public forms are."""

from __future__ import annotations

from pydantic import Field

from privacy_runtime.settings import ServiceSettings


class PrivacyCenterSettings(ServiceSettings):
    privacy_center_web_port: int = 6069
    #: The services the privacy center reads (their HTTP APIs, with SERVICE_TOKEN).
    consent_base_url: str = "http://127.0.0.1:6066"
    dsar_base_url: str = "http://127.0.0.1:6067"
    notifier_base_url: str = "http://127.0.0.1:6068"
    read_timeout_seconds: float = Field(default=5.0, gt=0)
    #: The policy version a preference change is given under.
    policy_version: str = "2021-10-30"
    #: Contract lifetimes: sign-in link 30 minutes and once, footer link 30 days, session 30 minutes idle.
    sign_in_link_minutes: int = Field(default=30, ge=1, le=60)
    session_idle_minutes: int = Field(default=30, ge=1, le=60)
    #: The email form: per address and per client, attempts per hour.
    email_limit_per_address: int = Field(default=3, ge=1)
    email_limit_per_client: int = Field(default=20, ge=1)
    #: Code entry: attempts per client per hour (the dsar service also counts wrong codes per case).
    code_limit_per_client: int = Field(default=20, ge=1)
    #: The email form answers no sooner than this, known address or not, so timing tells nothing.
    email_answer_floor_seconds: float = Field(default=0.6, ge=0)
    #: Use X-Forwarded-For's first address as the client (only behind a proxy that sets it).
    trust_forwarded_for: bool = False
    #: What a person wrote with a request (rectification explanation, objection reasons) is kept this
    #: long, sealed, to show on their page.
    notes_retention_days: int = Field(default=90, ge=1)
    #: How often dsar is asked which of the subjects this app holds notes of were erased (their notes
    #: are then deleted and their key here shredded; services/privacy_center/erasure.py).
    erasure_check_seconds: float = Field(default=60.0, gt=0)
    #: Off: events wait in the outbox (maintenance; the crash test uses it to hold them there).
    outbox_relay: bool = True
