"""Property-based fuzzing of the envelope codec: any input is an event or a DecodeError, never a crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy_runtime.codec import DecodeError, decode, encode
from schemas.examples import example_event
from schemas.registry import key_for
from schemas.topics import INBOUND_TOPICS, command_topic

TOPICS = [*INBOUND_TOPICS, command_topic("consent")]
REASONS = {"empty", "too_large", "invalid_json", "invalid_envelope", "invalid_data", "key_mismatch", "unknown_topic"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def _decode_or_reason(topic: str, key: bytes | None, value: bytes | None) -> str:
    try:
        decode(topic, key, value)
        return "ok"
    except DecodeError as exc:
        assert exc.reason in REASONS
        assert exc.message
        return exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), st.one_of(st.none(), st.binary(max_size=64)), st.binary(max_size=2048))
def test_random_bytes_never_crash(topic: str, key: bytes | None, value: bytes) -> None:
    assert _decode_or_reason(topic, key, value) != "ok"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), st.data())
def test_mutated_valid_events_are_accepted_or_refused_cleanly(topic: str, data: st.DataObject) -> None:
    event = example_event(topic)
    doc: dict[str, Any] = json.loads(event.model_dump_json())
    target = data.draw(st.sampled_from(["envelope", "data"]))
    container = doc if target == "envelope" else doc["data"]
    field = data.draw(st.sampled_from(sorted(container)))
    container[field] = data.draw(json_values)
    key = key_for(topic, event).encode()
    outcome = _decode_or_reason(topic, key, json.dumps(doc).encode())
    if outcome == "ok":
        # Whatever is accepted re-encodes to an event that decodes to the same thing.
        again = decode(topic, key, encode(decode(topic, key, json.dumps(doc).encode())))
        assert again.id == doc["id"]


def test_every_topic_example_round_trips() -> None:
    for topic in TOPICS:
        event = example_event(topic)
        key = key_for(topic, event).encode()
        assert decode(topic, key, encode(event)) == event
