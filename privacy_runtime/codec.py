"""The envelope codec: bytes on a topic <-> a validated CloudEvent of that topic's model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.registry import UnknownTopic, envelope_model_for, key_for

#: Larger values are refused before parsing: no contract event comes near this.
MAX_MESSAGE_BYTES = 256 * 1024


class DecodeError(Exception):
    """Why a message cannot be accepted; `reason` is a short code used as a metric label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _describe(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode(topic: str, key: bytes | None, value: bytes | None) -> Any:
    """Parse and validate one message, or raise DecodeError with a reason a person can act on."""
    if value is None:
        raise DecodeError("empty", "message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise DecodeError("too_large", f"message is {len(value)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        model = envelope_model_for(topic)
    except UnknownTopic as exc:
        raise DecodeError("unknown_topic", f"no contract model for topic {topic!r}") from exc
    try:
        event = model.model_validate_json(value)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors(include_url=False, include_input=False)}
        if kinds & {"json_invalid", "json_type"}:
            raise DecodeError("invalid_json", f"not valid UTF-8 JSON: {_describe(exc)}") from exc
        in_data = all(e["loc"] and e["loc"][0] == "data" for e in exc.errors(include_url=False))
        reason = "invalid_data" if in_data else "invalid_envelope"
        raise DecodeError(reason, f"{reason.replace('_', ' ')} for {topic}: {_describe(exc)}") from exc
    expected_key = key_for(topic, event)
    actual_key = key.decode("utf-8", "replace") if key is not None else None
    if actual_key != expected_key:
        raise DecodeError(
            "key_mismatch", f"Kafka key {actual_key!r} does not match the event's key {expected_key!r}"
        )
    return event


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()
