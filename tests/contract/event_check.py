"""A contract message checked by tools that know nothing of this code base: the CloudEvents Python SDK
(Kafka protocol binding, structured content mode, CloudEvents 1.0) must parse it, and the committed
JSON Schema of its topic (schemas/jsonschema/) must validate it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from jsonschema import Draft202012Validator

from schemas.topics import COMMAND_TOPIC_PREFIX

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"


def schema_name(topic: str) -> str:
    """The schema file of a topic: every `privacy-commands.<system>` shares the command family's."""
    return "privacy-commands" if topic.startswith(COMMAND_TOPIC_PREFIX) else topic


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(topic: str, key: bytes | None, value: bytes | None, headers: dict[str, bytes] | None = None) -> list[str]:
    """What is wrong with one message of `topic` (nothing: an empty list)."""
    if value is None:
        return ["no value (a tombstone) on a topic of events"]
    try:
        event = from_structured(KafkaMessage(headers=headers or {}, key=key, value=value), JSONFormat(), CloudEvent)
    except Exception as exc:  # the SDK's own refusal, whatever its type
        return [f"the CloudEvents SDK refuses it: {type(exc).__name__}: {exc}"]
    found: list[str] = []
    if event.get_type() != topic:
        found.append(f"type {event.get_type()!r} on topic {topic}")
    document: Any = json.loads(value)
    found += [f"{'/'.join(map(str, error.absolute_path)) or '(event)'}: {error.message}"
              for error in validator(schema_name(topic)).iter_errors(document)]
    return found
