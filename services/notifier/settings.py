"""Notifier settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from pydantic import SecretStr

from privacy_runtime.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    #: The consent service's decision API (asked before any marketing email).
    consent_base_url: str = "http://127.0.0.1:6066"
    #: Base of the unsubscribe links in marketing email (the consent service as the public sees it).
    consent_public_url: str = "http://127.0.0.1:6066"
    consent_timeout_seconds: float = 2.0

    #: Token-bucket limit that protects the SMTP relay.
    smtp_rate_per_second: float = 500.0
    smtp_timeout_seconds: float = 20.0
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: None: STARTTLS when the relay offers it; true: require it; false: never.
    smtp_starttls: bool | None = None
    smtp_use_tls: bool = False

    #: Emails claimed per round (further capped so a round fits well inside the lease).
    email_batch_size: int = 200
    #: A row left in `sending` longer than this is retried (the process that claimed it died).
    email_lease_seconds: float = 60.0
    email_retry_base_seconds: float = 10.0
    email_retry_max_seconds: float = 3600.0
    #: A temporary failure lasting this long becomes permanent (failed + audit).
    email_give_up_after_seconds: float = 3 * 86400.0
    #: How long an email waits for its recipient's registration to reach the directory.
    email_unknown_recipient_grace_seconds: float = 3600.0
    #: Longest sleep of the sender and fan-out loops when there is no work (NOTIFY wakes them sooner).
    email_idle_poll_seconds: float = 0.5

    #: How long an erased subject's address is kept to send the erasure confirmation (then shredded).
    final_notice_retention_seconds: float = 86400.0

    #: Directory entries queued per fan-out step (one transaction each, resumable from its cursor).
    fanout_page_size: int = 1000
