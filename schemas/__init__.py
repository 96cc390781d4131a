"""The event contract: one pydantic v2 model per topic (see ../shared/DESIGN.md).

Typical use::

    from schemas import new_event, parse_event, dump_event, key_for
    from schemas.events import ConsentChanged

    event = new_event("consent-changed", ConsentChanged(...), source="/services/consent", subject=sid)
    producer.send(topic, key=key_for(topic, event).encode(), value=dump_event(event))

    try:
        event = parse_event(message.value, message.topic)
    except ValidationError as exc:   # pydantic.ValidationError; str(exc) carries no input values
        dead_letter(message, error=str(exc))

Modules: ``topics`` (names, system ids), ``enums``, ``fields`` (constrained types),
``events`` (data models), ``envelope`` (CloudEvent, build/parse/dump), ``registry``
(topic lookups, Kafka keys), ``examples`` (one valid event per topic), ``generate``
(JSON Schema + AsyncAPI files).
"""

from pydantic import ValidationError

from schemas.envelope import CloudEvent, dump_event, envelope_model_for, new_event, parse_event
from schemas.events import EventData, data_model_for
from schemas.registry import key_for, subject_required
from schemas.topics import UnknownTopic

__all__ = [
    "CloudEvent",
    "EventData",
    "UnknownTopic",
    "ValidationError",
    "data_model_for",
    "dump_event",
    "envelope_model_for",
    "key_for",
    "new_event",
    "parse_event",
    "subject_required",
]
