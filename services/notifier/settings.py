"""Notifier settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from privacy_runtime.settings import ServiceSettings
from services.notifier.rules import SEND_BY, TAKE_NEW_UNTIL


class NotifierSettings(ServiceSettings):
    #: The consent service's decision API (asked before any marketing email).
    consent_base_url: str = "http://127.0.0.1:6066"
    #: Base of the unsubscribe links in marketing email (the consent service as the public sees it).
    consent_public_url: str = "http://127.0.0.1:6066"
    consent_timeout_seconds: float = Field(2.0, gt=0)

    #: Token-bucket limit that protects the SMTP relay, per process: with several replicas, the relay's
    #: limit divided by the most replicas that may run (docs/operations.md).
    smtp_rate_per_second: float = Field(500.0, gt=0)
    #: Sending lanes per process, each with its own SMTP connection (and a database connection of the
    #: pool, which has 10, while it sends): sized to the relay (the sessions it accepts from one client,
    #: divided by the most replicas that may run).
    smtp_connections: int = Field(4, ge=1, le=8)
    #: The most emails a lane sends under one transaction (one re-check of their locks, one `sent`
    #: commit for them all): fewer round trips to PostgreSQL per email, and the crash window. A crash
    #: can leave at most this many emails per lane accepted by the relay and not yet marked `sent`
    #: (sent again after their lease), and an erasure waits for at most this many sends.
    emails_per_send_transaction: int = Field(8, ge=1, le=50)
    #: Per SMTP command; with the consent timeout it should fit 30% of the lease (checked at start-up).
    smtp_timeout_seconds: float = Field(15.0, gt=0)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: True (the default): require STARTTLS, so a relay that does not offer it (or an attacker who strips
    #: the offer) gets no email in clear; false: never (only for a local sink without TLS, such as the
    #: devstack's, which sets it); None (in code only): opportunistic, STARTTLS when offered.
    smtp_starttls: bool | None = True
    smtp_use_tls: bool = False

    #: Emails claimed per round (further capped so a round fits well inside the lease).
    email_batch_size: int = Field(200, ge=1)
    #: A row left in `sending` longer than this is retried (the process that claimed it died). A round
    #: starts no email after half of it and cuts any send at 80% of it (see delivery.py).
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
    fanout_page_size: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _lease_fits_a_send(self) -> NotifierSettings:
        # A lease too short for even a quick send would cut every send and retry it forever.
        if self.email_lease_seconds < MIN_LEASE_SECONDS:
            raise ValueError(
                f"EMAIL_LEASE_SECONDS={self.email_lease_seconds:g} is too short: at least "
                f"{MIN_LEASE_SECONDS:g} s (emails are started only in its first half and cut at "
                f"{SEND_BY:.0%} of it)"
            )
        return self

    def send_window_seconds(self) -> float:
        """What a send started just before the round stops taking new emails has left before it is cut."""
        return self.email_lease_seconds * (SEND_BY - TAKE_NEW_UNTIL)

    def timeouts_beyond_lease(self) -> str | None:
        """A warning when the SMTP and consent timeouts are longer than a send may take under the lease
        (such a send is cut at the lease's deadline instead of at its own timeout), else None."""
        window = self.send_window_seconds()
        if self.smtp_timeout_seconds + self.consent_timeout_seconds <= window:
            return None
        return (
            f"SMTP_TIMEOUT_SECONDS={self.smtp_timeout_seconds:g} + CONSENT_TIMEOUT_SECONDS="
            f"{self.consent_timeout_seconds:g} exceed the {window:g} s a send may take under "
            f"EMAIL_LEASE_SECONDS={self.email_lease_seconds:g}: a slower send is cut at {SEND_BY:.0%} of "
            "the lease and retried (raise the lease or lower the timeouts)"
        )


#: The shortest lease accepted (its window for one send is 30% of it).
MIN_LEASE_SECONDS = 2.0
