"""Topic names and system ids of the contract, in one place."""

from __future__ import annotations

USER_REGISTERED = "user-registered"
CONSENT_CHANGED = "consent-changed"
ERASURE_REQUESTED = "erasure-requested"
DSAR_REQUESTED = "dsar-requested"
MERGER_NOTICE = "merger-notice"
POLICY_CHANGED = "policy-changed"
LEGAL_DISCLOSURE = "legal-disclosure"
PRIVACY_ACKS = "privacy-acks"

DSAR_STATUS = "dsar-status"
NOTIFICATION_REQUESTED = "notification-requested"
PRIVACY_AUDIT = "privacy-audit"

INBOUND_TOPICS: tuple[str, ...] = (
    USER_REGISTERED,
    CONSENT_CHANGED,
    ERASURE_REQUESTED,
    DSAR_REQUESTED,
    MERGER_NOTICE,
    POLICY_CHANGED,
    LEGAL_DISCLOSURE,
    PRIVACY_ACKS,
)
OUTBOUND_TOPICS: tuple[str, ...] = (DSAR_STATUS, NOTIFICATION_REQUESTED, PRIVACY_AUDIT)

#: Default downstream systems (contract ids) and the three services, which are systems too.
EXTERNAL_SYSTEMS: tuple[str, ...] = (
    "accounts",
    "billing",
    "marketing_email",
    "analytics",
    "logs",
    "support",
    "partners",
    "ipcom_group",
)
INTERNAL_SYSTEMS: tuple[str, ...] = ("consent", "dsar", "notifier")
ALL_SYSTEMS: tuple[str, ...] = EXTERNAL_SYSTEMS + INTERNAL_SYSTEMS

COMMAND_TOPIC_PREFIX = "privacy-commands."


def command_topic(system: str) -> str:
    return f"{COMMAND_TOPIC_PREFIX}{system}"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


COMMAND_TOPICS: tuple[str, ...] = tuple(command_topic(s) for s in ALL_SYSTEMS)

#: Every topic a consumer of ours reads, so every one has a dead-letter topic.
CONSUMED_TOPICS: tuple[str, ...] = INBOUND_TOPICS + tuple(command_topic(s) for s in INTERNAL_SYSTEMS)
DLQ_TOPICS: tuple[str, ...] = tuple(dlq_topic(t) for t in CONSUMED_TOPICS + OUTBOUND_TOPICS)


def all_topics() -> tuple[str, ...]:
    """Every contract topic, for topic creation, Strimzi manifests and docs."""
    return INBOUND_TOPICS + OUTBOUND_TOPICS + COMMAND_TOPICS + DLQ_TOPICS


# --- additions by the schemas package (nothing above renamed) -------------------------------

#: Topics whose Kafka key is a named id in ``data`` rather than the envelope ``subject``;
#: on these the envelope ``subject`` may be absent (they concern every user, not one).
KEY_FIELDS: dict[str, str] = {MERGER_NOTICE: "transaction_id", POLICY_CHANGED: "version"}
SUBJECTLESS_TOPICS: tuple[str, ...] = tuple(KEY_FIELDS)

#: Topics whose events carry a typed ``data`` model (everything except the dead-letter topics).
DATA_TOPICS: tuple[str, ...] = INBOUND_TOPICS + OUTBOUND_TOPICS + COMMAND_TOPICS

#: Headers a dead-lettered message carries (besides its original headers).
DLQ_HEADER_ERROR = "x-error"
DLQ_HEADER_ORIGINAL_TOPIC = "x-original-topic"
DLQ_HEADER_ORIGINAL_PARTITION = "x-original-partition"
DLQ_HEADER_ORIGINAL_OFFSET = "x-original-offset"
#: Extension: which service refused the message (several services consume user-registered,
#: consent-changed, dsar-requested and privacy-acks, and each dead-letters what it refuses).
DLQ_HEADER_DEAD_LETTERED_BY = "x-dead-lettered-by"
DLQ_HEADERS: tuple[str, ...] = (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_ORIGINAL_TOPIC,
    DLQ_HEADER_ORIGINAL_PARTITION,
    DLQ_HEADER_ORIGINAL_OFFSET,
)


class UnknownTopic(ValueError):
    """The topic name is not a contract topic that carries typed events."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"unknown topic: {topic!r}")
        self.topic = topic


def is_command_topic(topic: str) -> bool:
    """True for ``privacy-commands.<system>`` with a contract system id."""
    return topic in COMMAND_TOPICS


def command_system(topic: str) -> str:
    """The system id of a command topic (``privacy-commands.billing`` -> ``billing``)."""
    if not is_command_topic(topic):
        raise UnknownTopic(topic)
    return topic[len(COMMAND_TOPIC_PREFIX) :]
