"""`dump_checked_event` (the encoder of hot paths that send many commands) writes the very bytes the
contract models would: same fields, same order, same timestamp and UUID forms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.enums import CommandAction, Purpose, SystemId
from schemas.envelope import dump_checked_event, new_event, parse_event
from schemas.events import PrivacyCommand
from schemas.topics import command_topic

NOW = datetime.now(UTC)

zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
moments = st.builds(
    lambda seconds, micro, zone: (NOW + timedelta(seconds=seconds)).replace(microsecond=micro).astimezone(zone),
    st.integers(-86_400, 86_400), st.sampled_from([0, 1, 500_000, 999_999]), zones,
)
subjects = st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)


@given(
    system=st.sampled_from(list(SystemId)), action=st.sampled_from(list(CommandAction)),
    purpose=st.none() | st.sampled_from(list(Purpose)), request_id=st.none() | st.uuids(),
    command_id=st.uuids(), respond_by=moments, time=moments, subject=subjects, event_id=st.uuids(),
)
def test_the_same_bytes_as_the_models(
    system: SystemId, action: CommandAction, purpose: Purpose | None, request_id: uuid.UUID | None,
    command_id: uuid.UUID, respond_by: datetime, time: datetime, subject: str, event_id: uuid.UUID,
) -> None:
    # As issue_many passes them: plain strings for the enums, UUIDs, aware datetimes.
    data: dict[str, Any] = {
        "command_id": command_id, "system": system.value, "action": action.value,
        "purpose": purpose.value if purpose else None, "request_id": request_id, "fields": None,
        "respond_by": respond_by,
    }
    try:
        command = PrivacyCommand.model_validate(data)
    except ValidationError:
        assume(False)  # a shape the contract refuses (e.g. suppress without purpose) is never sent
        raise
    topic = command_topic(system.value)
    expected = new_event(topic, command, source="urn:privacy:consent", subject=subject, id=str(event_id),
                         time=time).model_dump_json().encode()
    encoded = dump_checked_event(topic, data, source="urn:privacy:consent", subject=subject, id=str(event_id),
                                 time=time)
    assert encoded == expected
    assert parse_event(encoded, topic) == parse_event(expected, topic)
