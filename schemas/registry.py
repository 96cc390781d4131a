"""Topic -> model lookups and Kafka keys, for every contract topic."""

from __future__ import annotations

from typing import Any

from schemas import topics
from schemas.envelope import CloudEvent, command_envelope_model, envelope_model_for
from schemas.events import TOPIC_MODELS, PrivacyCommand, data_model_for
from schemas.topics import KEY_FIELDS, SUBJECTLESS_TOPICS, UnknownTopic


def subject_required(topic: str) -> bool:
    """Whether events of ``topic`` must carry an envelope ``subject``."""
    data_model_for(topic)  # raises UnknownTopic
    return topic not in SUBJECTLESS_TOPICS


def key_field(topic: str) -> str:
    """Where the Kafka key of ``topic`` comes from: ``subject`` or ``data.<field>``."""
    data_model_for(topic)
    return f"data.{KEY_FIELDS[topic]}" if topic in KEY_FIELDS else "subject"


def key_for(topic: str, event: CloudEvent[Any]) -> str:
    """The Kafka key of ``event`` on ``topic``: the subject, or ``transaction_id`` / ``version``.

    Encode it as UTF-8 for the broker. Raises ``ValueError`` if the event is not of ``topic``.
    """
    data_model_for(topic)
    if event.type != topic:
        raise ValueError(f"event of type {event.type!r} is not an event of topic {topic!r}")
    if topic in KEY_FIELDS:
        return str(getattr(event.data, KEY_FIELDS[topic]))
    if event.subject is None:  # unreachable for validated events
        raise ValueError(f"event on {topic!r} has no subject")
    return event.subject


def schema_topics() -> dict[str, type[CloudEvent[Any]]]:
    """Name -> envelope model of every published JSON Schema (the command family is one)."""
    models: dict[str, type[CloudEvent[Any]]] = {
        topic: envelope_model_for(topic) for topic in topics.INBOUND_TOPICS + topics.OUTBOUND_TOPICS
    }
    models["privacy-commands"] = command_envelope_model()
    return models


__all__ = [
    "TOPIC_MODELS",
    "PrivacyCommand",
    "UnknownTopic",
    "data_model_for",
    "envelope_model_for",
    "key_field",
    "key_for",
    "schema_topics",
    "subject_required",
]
