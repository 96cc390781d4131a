"""Building a contract event from ``--set key=value`` flags and/or a JSON file, validated first.

``--set`` values: ``key=value`` takes JSON when the value parses as JSON and the model accepts it
(``granted=false``, ``consents=[...]``), else the plain string (``version=2`` stays ``"2"`` when the
field is a string); ``key:=json`` always takes JSON. Dotted keys build nested objects
(``details.circumstance=legal_claims``). A file holds either the ``data`` object or a whole
CloudEvent (then its ``subject``, ``id`` and ``source`` are used unless given as options).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from privacyctl.errors import INVALID, CtlError
from schemas import topics
from schemas.envelope import CloudEvent, new_event
from schemas.events import EventData, data_model_for
from schemas.registry import key_for, subject_required
from schemas.topics import UnknownTopic

SOURCE = "urn:isopartner:privacyctl"


@dataclass(frozen=True)
class Assignment:
    path: tuple[str, ...]
    raw: str
    forced_json: bool

    @property
    def name(self) -> str:
        return ".".join(self.path)


def parse_assignment(text: str) -> Assignment:
    key, sep, raw = text.partition("=")
    if not sep:
        raise CtlError(f"--set {text!r}: expected key=value (or key:=json)", INVALID)
    forced = key.endswith(":")
    if forced:
        key = key[:-1]
    path = tuple(part.strip() for part in key.split("."))
    if not all(path):
        raise CtlError(f"--set {text!r}: empty field name", INVALID)
    if forced:
        try:
            json.loads(raw)
        except ValueError as exc:
            raise CtlError(f"--set {text!r}: the value after := is not JSON ({exc})", INVALID) from exc
    return Assignment(path, raw, forced)


def _guess(assignment: Assignment, as_string: bool) -> Any:
    if assignment.forced_json:
        return json.loads(assignment.raw)
    if as_string:
        return assignment.raw
    try:
        value = json.loads(assignment.raw)
    except ValueError:
        return assignment.raw
    return value


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], assignments: Sequence[Assignment], strings: set[tuple[str, ...]]) -> dict[str, Any]:
    data = json.loads(json.dumps(base))  # deep copy
    for a in assignments:
        _put(data, a.path, _guess(a, a.path in strings))
    return data


def check_topic(topic: str) -> type[EventData]:
    try:
        return data_model_for(topic)
    except UnknownTopic:
        known = ", ".join(topics.DATA_TOPICS)
        raise CtlError(f"unknown topic {topic!r}; contract topics: {known}", INVALID) from None


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {prefix}{loc}: {e['msg']}")
    return "\n".join(lines)


def validate_data(topic: str, base: dict[str, Any], assignments: Sequence[Assignment]) -> EventData:
    """The ``data`` model for ``topic``; a --set value that only fits as a string is retried as one."""
    model = check_topic(topic)
    strings: set[tuple[str, ...]] = set()
    while True:
        data = _merge(base, assignments, strings)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            retry = {
                a.path
                for a in assignments
                if a.path not in strings
                and not a.forced_json
                and not isinstance(_guess(a, False), str)
                and any(tuple(str(p) for p in err["loc"][: len(a.path)]) == a.path for err in exc.errors())
            }
            if retry:
                strings |= retry
                continue
            raise CtlError(
                f"the data is not a valid {topic!r} event:\n{format_validation_error(exc, 'data.')}", INVALID
            ) from None


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text() if str(path) != "-" else _stdin()
    except OSError as exc:
        raise CtlError(f"cannot read {path}: {exc.strerror or exc}", INVALID) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CtlError(f"{path} is not valid JSON: {exc}", INVALID) from exc
    if not isinstance(value, dict):
        raise CtlError(f"{path} must hold a JSON object (the event's data, or a whole CloudEvent)", INVALID)
    return value


def _stdin() -> str:
    return sys.stdin.read()


def build_event(
    topic: str,
    *,
    file_data: dict[str, Any] | None = None,
    assignments: Sequence[str] = (),
    subject: str | None = None,
    event_id: str | None = None,
    source: str | None = None,
    time: datetime | None = None,
) -> tuple[CloudEvent[Any], str]:
    """A validated event for ``topic`` and its Kafka key."""
    check_topic(topic)
    parsed = [parse_assignment(a) for a in assignments]
    base: dict[str, Any] = dict(file_data or {})
    if "specversion" in base:  # a whole CloudEvent
        if base.get("type") not in (None, topic):
            raise CtlError(f"the file holds a {base.get('type')!r} event, not {topic!r}", INVALID)
        subject = subject if subject is not None else base.get("subject")
        event_id = event_id if event_id is not None else base.get("id")
        source = source if source is not None else base.get("source")
        data = base.get("data")
        if not isinstance(data, dict):
            raise CtlError("the event in the file has no data object", INVALID)
        base = data
    if not parsed and not base:
        raise CtlError(f"no data: give --file data.json or --set key=value (try `privacyctl example {topic}`)", INVALID)
    if subject is None and subject_required(topic):
        raise CtlError(f"{topic!r} events need a subject: add --subject <subject id>", INVALID)
    data_model = validate_data(topic, base, parsed)
    try:
        event = new_event(topic, data_model, source=source or SOURCE, subject=subject, id=event_id, time=time)
    except ValidationError as exc:
        raise CtlError(f"the event is not valid:\n{format_validation_error(exc)}", INVALID) from None
    return event, key_for(topic, event)


def example_data(topic: str) -> dict[str, Any]:
    """The contract's example ``data`` for ``topic``, as JSON-ready values."""
    from schemas.examples import example_data as _example

    check_topic(topic)
    result: dict[str, Any] = _example(topic).model_dump(mode="json", exclude_none=True)
    return result
