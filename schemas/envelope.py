"""The CloudEvents 1.0 envelope (structured JSON mode) shared by every topic.

``CloudEvent[DataModel]`` is a generic pydantic model; :func:`envelope_model_for`
returns the envelope of one topic (``type`` fixed to the topic name, ``subject``
required unless the topic is ``merger-notice`` or ``policy-changed``). Build events
with :func:`new_event`, parse them with :func:`parse_event`, and serialise them with
:func:`dump_event` (or, for many events of one shape checked once, :func:`dump_checked_event`).

Decisions (the contract leaves these open):

* ``id``: any non-empty string of at most 128 characters without control
  characters (CloudEvents allows any string; producers here use UUID4).
* ``source``: a non-empty URI-reference of at most 512 characters (RFC 3986
  characters only, no whitespace).
* ``time``: required (ordering is by event time). RFC 3339 with an offset; naive
  times are refused, as are times before :data:`EARLIEST_EVENT_TIME` and times more
  than :data:`MAX_FUTURE_SKEW` after the validating machine's clock.
* ``datacontenttype``: ``application/json``; may be omitted on input (CloudEvents
  says absent means JSON in structured mode) and is always written on output.
* Extension attributes (e.g. ``traceparent``) are accepted: names must be
  CloudEvents-conformant (``[a-z0-9]{1,20}``), values strings of at most
  :data:`MAX_EXTENSION_VALUE` characters, at most :data:`MAX_EXTENSIONS` of them.
  They are kept and written back out; nothing in the contract interprets them.
* ``subject``: omitted from the output when ``None``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Generic, Literal, Self, TypeVar, cast
from uuid import uuid4

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)

from schemas import topics
from schemas.events import EventData, PrivacyCommand, data_model_for
from schemas.fields import SUBJECT_PATTERN, URI_REFERENCE_PATTERN, SubjectId, Timestamp

SPECVERSION: Final = "1.0"
DATACONTENTTYPE: Final = "application/json"

#: Events may be at most this far in the future of the validating clock (producer clock skew).
MAX_FUTURE_SKEW = timedelta(days=1)
#: Events older than this are refused (nothing of this platform predates it).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)

MAX_ID = 128
MAX_SOURCE = 512
MAX_EXTENSIONS = 8
MAX_EXTENSION_VALUE = 1024
EXTENSION_NAME_PATTERN = r"^[a-z0-9]{1,20}$"
_EXTENSION_NAME = re.compile(EXTENSION_NAME_PATTERN)
_CORE_ATTRIBUTES = 8  # specversion id type source time subject datacontenttype data


def _now() -> datetime:
    return datetime.now(UTC)


def _event_time_in_range(value: datetime) -> datetime:
    if value < EARLIEST_EVENT_TIME:
        raise ValueError("time is before 2000-01-01")
    if value > _now() + MAX_FUTURE_SKEW:
        raise ValueError(f"time is more than {MAX_FUTURE_SKEW} in the future")
    return value


EventId = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f\x7f]+$")
]
SourceRef = Annotated[
    str, StringConstraints(strict=True, max_length=MAX_SOURCE, pattern=URI_REFERENCE_PATTERN)
]
TopicName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9._-]{1,249}$")]
EventTime = Annotated[Timestamp, AfterValidator(_event_time_in_range)]
ExtensionValue = Annotated[str, StringConstraints(strict=True, max_length=MAX_EXTENSION_VALUE)]

DataT = TypeVar("DataT")


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event whose ``data`` is a contract model.

    Prefer ``envelope_model_for(topic)`` (or :func:`parse_event`) over a bare
    ``CloudEvent[Model]``: both validate the same rules, but only the former fixes
    ``type`` to one topic in the JSON Schema.
    """

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        hide_input_in_errors=True,
        json_schema_extra={
            "propertyNames": {"pattern": EXTENSION_NAME_PATTERN},
            "maxProperties": _CORE_ATTRIBUTES + MAX_EXTENSIONS,
        },
    )
    __pydantic_extra__: dict[str, ExtensionValue] = Field(init=False)

    specversion: Literal["1.0"]
    id: EventId
    type: TopicName
    source: SourceRef
    time: EventTime
    subject: SubjectId | None = Field(default=None, exclude_if=lambda value: value is None)
    datacontenttype: Literal["application/json"] = DATACONTENTTYPE
    data: DataT

    @model_validator(mode="after")
    def _envelope_rules(self) -> Self:
        extensions = self.__pydantic_extra__ or {}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"more than {MAX_EXTENSIONS} extension attributes")
        for name in extensions:
            if not _EXTENSION_NAME.fullmatch(name):
                raise ValueError("extension attribute names must match [a-z0-9]{1,20}")
        if not isinstance(self.data, EventData):
            raise ValueError("data must be a contract model; use envelope_model_for(topic)")
        if not type(self.data).accepts_topic(self.type):
            raise ValueError(f"data of {type(self.data).__name__} does not belong to topic {self.type}")
        if self.subject is None and self.type not in topics.SUBJECTLESS_TOPICS:
            raise ValueError(f"subject is required on topic {self.type}")
        self.data.check_envelope(self.type, self.subject)
        return self

    @property
    def extensions(self) -> dict[str, str]:
        """The CloudEvents extension attributes carried by this event."""
        return dict(self.__pydantic_extra__ or {})


def _topic_class_name(topic: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-._]", topic)) + "Event"


def _envelope_doc(topic: str) -> str:
    if topic in topics.KEY_FIELDS:
        key = f"data.{topics.KEY_FIELDS[topic]}"
        subject = "The subject may be absent."
    else:
        key = "the subject"
        subject = "The subject is required."
    return (
        f"CloudEvents 1.0 event (structured JSON mode) on Kafka topic `{topic}`; Kafka key: {key}. "
        f"{subject} `time` must also lie between {EARLIEST_EVENT_TIME.date().isoformat()} and "
        f"{MAX_FUTURE_SKEW.days} day(s) after the consumer's clock (not expressible in JSON Schema). "
        "Extension attributes: lowercase alphanumeric names of at most 20 characters, string values."
    )


def _literal(values: tuple[str, ...]) -> Any:
    return cast(Any, Literal)[values]


def _envelope_class(
    name: str, doc: str, topic_type: Any, data_model: type[EventData], subject_required: bool
) -> Any:
    subject: Any = (
        (SubjectId, ...)
        if subject_required
        else (SubjectId | None, Field(default=None, exclude_if=lambda v: v is None))
    )
    return create_model(
        name,
        __base__=CloudEvent[data_model],  # type: ignore[valid-type]
        __module__=__name__,
        __doc__=doc,
        type=(topic_type, ...),
        subject=subject,
    )


@functools.cache
def envelope_model_for(topic: str) -> type[CloudEvent[Any]]:
    """The envelope model of one topic; raises :class:`schemas.topics.UnknownTopic` for others."""
    data_model = data_model_for(topic)
    subject_required = topic not in topics.SUBJECTLESS_TOPICS
    name = _topic_class_name(topic)
    return cast(
        type[CloudEvent[Any]],
        _envelope_class(name, _envelope_doc(topic), _literal((topic,)), data_model, subject_required),
    )


@functools.cache
def command_envelope_model() -> type[CloudEvent[Any]]:
    """One envelope for the whole ``privacy-commands.<system>`` family (for the JSON Schema)."""
    return cast(
        type[CloudEvent[Any]],
        _envelope_class(
            "PrivacyCommandEvent",
            _envelope_doc("privacy-commands.<system>"),
            _literal(topics.COMMAND_TOPICS),
            PrivacyCommand,
            True,
        ),
    )


#: Reads only ``type`` of a message, to pick the envelope when the topic is not known.
_TypeOnly: Any = create_model(
    "_TypeOnly",
    __config__=ConfigDict(extra="ignore", hide_input_in_errors=True),
    type=(_literal(topics.DATA_TOPICS), ...),
)


def new_event(
    topic: str,
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    time: datetime | None = None,
    id: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> CloudEvent[Any]:
    """Build and validate an event for ``topic`` (uuid4 ``id`` and now in UTC by default).

    Raises ``pydantic.ValidationError`` when the event breaks the contract.
    """
    fields: dict[str, Any] = {
        **(extensions or {}),
        "specversion": SPECVERSION,
        "id": id if id is not None else str(uuid4()),
        "type": topic,
        "source": source,
        "time": time if time is not None else _now(),
        "datacontenttype": DATACONTENTTYPE,
        "data": data,
    }
    if subject is not None:
        fields["subject"] = subject
    return envelope_model_for(topic).model_validate(fields)


def dump_checked_event(
    topic: str, data: Mapping[str, Any], *, source: str, subject: str | None, id: str, time: datetime
) -> bytes:
    """The JSON of an event whose ``data`` was checked against its model already, byte for byte what
    ``new_event(...).model_dump_json()`` gives (a property test holds them equal).

    For hot paths that send many events of one checked shape (commands): validating every one costs
    several times the encoding. ``data`` holds the model's fields in its order, as JSON-ready values
    (str, None, UUID, datetime with a time zone)."""
    envelope: dict[str, Any] = {"specversion": SPECVERSION, "id": id, "type": topic, "source": source,
                                "time": time}
    if subject is not None:
        envelope["subject"] = subject
    envelope["datacontenttype"] = DATACONTENTTYPE
    envelope["data"] = data
    return orjson.dumps(envelope, option=orjson.OPT_UTC_Z)


def parse_event(raw: bytes | str | Mapping[str, Any], topic: str | None = None) -> CloudEvent[Any]:
    """Parse a message value (JSON bytes/str, or an already decoded mapping).

    With ``topic`` (the Kafka topic the message came from) the event's ``type`` must
    equal it; without, the envelope is chosen by the event's ``type``. Anything that
    is not valid JSON, not a valid envelope, or whose data does not match its
    topic's model raises ``pydantic.ValidationError`` (send the message to the DLQ
    with ``str(error)`` as ``x-error``; errors never include input values). A
    ``topic`` argument that is not a contract topic raises ``UnknownTopic``.
    """
    if topic is None:
        if isinstance(raw, Mapping):
            topic = _TypeOnly.model_validate(raw).type
        else:
            topic = _TypeOnly.model_validate_json(raw).type
    model = envelope_model_for(cast(str, topic))
    if isinstance(raw, Mapping):
        return model.model_validate(raw)
    return model.model_validate_json(raw)


def dump_event(event: CloudEvent[Any]) -> bytes:
    """The event as UTF-8 JSON bytes (structured CloudEvents), ready to be a Kafka value."""
    return event.model_dump_json().encode("utf-8")


__all__ = [
    "DATACONTENTTYPE",
    "EARLIEST_EVENT_TIME",
    "MAX_FUTURE_SKEW",
    "SPECVERSION",
    "SUBJECT_PATTERN",
    "CloudEvent",
    "ValidationError",
    "command_envelope_model",
    "dump_checked_event",
    "dump_event",
    "envelope_model_for",
    "new_event",
    "parse_event",
]
