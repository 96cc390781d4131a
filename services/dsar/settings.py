"""DSAR service settings (shared names from the contract, plus this service's own)."""

from __future__ import annotations

from pydantic import Field

from privacy_runtime.settings import ServiceSettings

DAY = 86400.0


class DsarSettings(ServiceSettings):
    #: One-time identity codes: lifetime, wrong guesses before the code locks, codes per request.
    verification_code_ttl_seconds: float = DAY
    verification_max_attempts: int = 5
    verification_max_codes: int = 3
    #: Wrong codes for one subject across all their requests within the window, before every code of
    #: theirs is refused until the window has passed (filing many requests buys no more guesses).
    verification_max_failures_per_subject: int = Field(default=10, ge=1)
    verification_failure_window_seconds: float = DAY
    #: A request whose identity is not verified within this long is closed (closed_unverified).
    unverified_close_after_seconds: float = 14 * DAY
    #: Export download links: lifetime and number of downloads.
    export_ttl_seconds: float = 7 * DAY
    export_max_downloads: int = 3
    #: How often the timer loop closes unverified cases, refreshes deadline gauges and escalates.
    timer_interval_seconds: float = 30.0
    #: Open cases due within this long count as "due soon" (gauge and one operator reminder).
    due_soon_seconds: float = 3 * DAY
    #: Retention of the dsar service's own records (the sweeper runs every `retention_sweep_seconds`).
    #: Closed case records are kept this long as proof a right was honoured (limitation period), then
    #: deleted; the audit chain keeps the transitions without personal data.
    case_record_retention_seconds: float = 3 * 365 * DAY
    retention_sweep_seconds: float = 3600.0
    #: Inactive subjects (the data map's `inactive_subject_retention_days`): erasures requested per
    #: sweep at most (0 turns the requests off), and per transaction. Bounded so a first pass over a
    #: large backlog does not flood the systems with erase commands at once; the rest follow next pass.
    retention_erasures_per_pass: int = Field(default=1000, ge=0)
    retention_erasure_page_size: int = Field(default=100, ge=1)
    #: A `retention_expired` erasure of an inactive subject erases at once only when this is true;
    #: otherwise it waits in manual review for an operator (activity is only what the service sees).
    retention_erase_without_review: bool = False
