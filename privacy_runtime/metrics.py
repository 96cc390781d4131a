"""The metrics catalogue: every metric the services export, in one place.

Names follow Prometheus conventions (base units in names, `_total` for counters). Each service
process exports its own registry at `/metrics`; Prometheus adds the `job`/`service` label. Dashboards
and alert rules use only the names below (a test scrapes the running services to check).
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DAY = 86400.0
CASE_BUCKETS = (60.0, 3600.0, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 60 * DAY, 90 * DAY)

# --- stream processing (every service) -------------------------------------------------------
EVENTS_CONSUMED = Counter("privacy_events_consumed_total", "Messages read from a topic", ["topic"])
EVENTS_PROCESSED = Counter("privacy_events_processed_total", "Events applied (first delivery)", ["topic"])
EVENTS_DUPLICATE = Counter("privacy_events_duplicate_total", "Events ignored as already processed", ["topic"])
EVENTS_DEAD_LETTERED = Counter(
    "privacy_events_dead_lettered_total", "Messages sent to <topic>.dlq", ["topic", "reason"]
)
EVENT_PROCESSING_SECONDS = Histogram(
    "privacy_event_processing_seconds", "Time to apply one batch of events", ["topic"], buckets=LATENCY_BUCKETS
)
EVENT_DELAY_SECONDS = Histogram(
    "privacy_event_delay_seconds",
    "From the event's time to the commit of its effect",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge("privacy_consumer_lag_messages", "Messages not yet consumed", ["topic", "partition"])
PROCESSING_RETRIES = Counter(
    "privacy_processing_retries_total", "Batches retried because a dependency was unavailable", ["topic"]
)

# --- outbox -----------------------------------------------------------------------------------
OUTBOX_PENDING = Gauge("privacy_outbox_pending_messages", "Outbox rows not yet published")
OUTBOX_PUBLISHED = Counter("privacy_outbox_published_total", "Events published from the outbox", ["topic"])
OUTBOX_DROPPED_ERASED = Counter(
    "privacy_outbox_dropped_erased_total", "Outbox events not published because their subject was erased"
)
KAFKA_PRODUCER_RENEWED = Counter(
    "privacy_kafka_producer_renewed_total", "Kafka producers replaced after a fatal error (e.g. out-of-order sequence)"
)

# --- housekeeping -----------------------------------------------------------------------------
HOUSEKEEPING_DELETED = Counter(
    "privacy_housekeeping_deleted_total", "Deduplication records deleted once they could no longer matter",
    ["table"],
)

# --- audit ------------------------------------------------------------------------------------
AUDIT_ENTRIES = Counter("privacy_audit_entries_total", "Audit trail entries written", ["action"])

# --- commands to downstream systems (consent and dsar) -----------------------------------------
COMMANDS_SENT = Counter("privacy_commands_sent_total", "Commands sent (first time)", ["system", "action"])
COMMANDS_RESENT = Counter("privacy_commands_resent_total", "Commands re-sent for want of an ack", ["system"])
COMMANDS_ACKNOWLEDGED = Counter(
    "privacy_commands_acknowledged_total", "Acknowledgements received", ["system", "status"]
)
COMMANDS_OUTSTANDING = Gauge("privacy_commands_outstanding", "Commands sent and not acknowledged", ["system"])
COMMANDS_OVERDUE = Gauge("privacy_commands_overdue", "Outstanding commands past respond_by", ["system"])
COMMANDS_OVERDUE_REPORTED = Counter(
    "privacy_commands_overdue_reported_total", "Commands reported as past respond_by", ["system"]
)

# --- consent ----------------------------------------------------------------------------------
CONSENT_CHANGES = Counter("privacy_consent_changes_total", "Consent ledger entries", ["purpose", "granted"])
DECISIONS = Counter("privacy_decisions_total", "Purpose decisions answered", ["purpose", "allowed"])
DECISION_READS = Counter(
    "privacy_decision_reads_total", "Where a decision's inputs came from (memory: the cache; database)", ["source"]
)
DECISION_CACHE_LIVE = Gauge(
    "privacy_decision_cache_live", "1 while the decision cache's LISTEN connection is up and it is used"
)

# --- dsar -------------------------------------------------------------------------------------
CASES_OPENED = Counter("privacy_cases_opened_total", "Cases opened", ["right"])
CASES_CLOSED = Counter("privacy_cases_closed_total", "Cases closed", ["right", "status"])
CASES_OPEN = Gauge("privacy_cases_open", "Cases not yet closed", ["right"])
CASES_OVERDUE = Gauge("privacy_cases_overdue", "Open cases past due_at", ["right"])
CASES_DUE_SOON = Gauge("privacy_cases_due_soon", "Open cases due within 3 days", ["right"])
CASES_AWAITING_REVIEW = Gauge(
    "privacy_cases_awaiting_review", "Cases waiting for an operator (the manual_review flag)", ["right"]
)
CASE_COMPLETION_SECONDS = Histogram(
    "privacy_case_completion_seconds", "From receipt to completion", ["right"], buckets=CASE_BUCKETS
)
RETENTION_ERASURES_REQUESTED = Counter(
    "privacy_retention_erasures_requested_total",
    "Erasures (ground retention_expired) requested for subjects inactive past the data map's retention",
)

# --- notifier ---------------------------------------------------------------------------------
EMAILS_SENT = Counter("privacy_emails_sent_total", "Emails accepted by the SMTP relay", ["template"])
EMAILS_FAILED = Counter("privacy_emails_failed_total", "Emails failed permanently", ["template"])
EMAILS_RETRIED = Counter("privacy_emails_retried_total", "Delivery attempts deferred after a temporary failure")
EMAILS_SUPPRESSED = Counter("privacy_emails_suppressed_total", "Emails not sent on purpose", ["reason"])
EMAIL_QUEUE_DEPTH = Gauge("privacy_email_queue_depth", "Emails waiting to be sent")
EMAIL_SEND_SECONDS = Histogram("privacy_email_send_seconds", "SMTP send time per email", buckets=LATENCY_BUCKETS)
FANOUT_RECIPIENTS = Counter("privacy_fanout_recipients_total", "Recipients queued by notice fan-outs", ["notice"])
FANOUT_IN_PROGRESS = Gauge("privacy_fanout_in_progress", "Notice fan-outs not finished")
EMAIL_UNCONFIRMED_SECONDS = Histogram(
    "privacy_email_unconfirmed_seconds",
    "From the SMTP relay accepting an email to the commit that marks it sent (a crash here resends it)",
    buckets=(0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS),
)
EMAILS_LEASE_EXPIRED = Counter(
    "privacy_emails_lease_expired_total", "Emails left in sending past the lease and retried (possible duplicates)"
)
EMAILS_SENT_UNMARKED = Counter(
    "privacy_emails_sent_unmarked_total",
    "Emails the relay accepted whose row was no longer this sender's claim when marked sent (retaken or cancelled)",
)
EMAIL_OLDEST_DUE_SECONDS = Gauge(
    "privacy_email_oldest_due_seconds",
    "Age of the oldest email due to be sent and not sent yet, per queue (personal, bulk); 0 when none is due",
    ["queue"],
)

# --- HTTP -------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("privacy_http_requests_total", "HTTP requests", ["route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "privacy_http_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS
)


# Label lookups take a lock and build a key each time; the hot paths keep their (few) children.
@functools.cache
def decision_counter(purpose: str, allowed: bool) -> Counter:
    return DECISIONS.labels(purpose=purpose, allowed="true" if allowed else "false")


@functools.cache
def http_request_counter(route: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(route=route, status=str(status))


@functools.cache
def http_request_seconds(route: str) -> Histogram:
    return HTTP_REQUEST_SECONDS.labels(route=route)


DECISION_FROM_MEMORY = DECISION_READS.labels(source="memory")
DECISION_FROM_DATABASE = DECISION_READS.labels(source="database")
