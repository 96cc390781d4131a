"""The wire form of commands and acks (privacy_runtime/command_codec.py, Outbox.encode): one encoder
whichever path sends a command, one decoder of an ack; pure, no database."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from privacy_runtime import export_chunks
from privacy_runtime.command_codec import AckIn, Command, CommandEncoder, ack_events
from privacy_runtime.crypto import KeyRing
from privacy_runtime.outbox import Outbox
from schemas.enums import AckStatus, CommandAction, Purpose, SystemId
from schemas.envelope import new_event, parse_event
from schemas.events import PrivacyAck, PrivacyCommand
from schemas.examples import example_data
from schemas.topics import DSAR_STATUS, PRIVACY_ACKS, command_topic

SOURCE = "urn:isopartner:privacy:consent"
RESPOND_BY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def suppress() -> Command:
    return Command(uuid.uuid4(), "s-1", "marketing_email", "suppress", "marketing_email", None, RESPOND_BY)


def test_a_command_and_its_resend_differ_only_in_event_id_and_time() -> None:
    encoder = CommandEncoder()
    command = suppress()
    sent = encoder.encode(command, source=SOURCE, event_id=str(uuid.uuid4()), time=datetime.now(UTC))
    resent = encoder.encode(command, source=SOURCE, event_id=str(uuid.uuid4()),
                            time=datetime.now(UTC) + timedelta(minutes=5))
    assert (sent.topic, sent.key, sent.sealed_for) == (resent.topic, resent.key, resent.sealed_for)
    assert sent.value != resent.value
    first, again = parse_event(sent.value, sent.topic), parse_event(resent.value, resent.topic)
    assert first.id != again.id and first.time < again.time
    assert first.model_dump(exclude={"id", "time"}) == again.model_dump(exclude={"id", "time"})
    same_id, same_time = str(uuid.uuid4()), datetime.now(UTC)
    assert encoder.encode(command, source=SOURCE, event_id=same_id, time=same_time).value == \
        encoder.encode(command, source=SOURCE, event_id=same_id, time=same_time).value, \
        "with the same id and time, the very same bytes"


def test_a_checked_kind_still_encodes_what_the_contract_model_would() -> None:
    encoder = CommandEncoder()
    for _ in range(2):  # the second is encoded without the model: the bytes must not change
        command = suppress()
        event_id, now = str(uuid.uuid4()), datetime.now(UTC)
        message = encoder.encode(command, source=SOURCE, event_id=event_id, time=now)
        model = PrivacyCommand(command_id=command.command_id, system=SystemId.MARKETING_EMAIL, action=CommandAction.SUPPRESS,
                               purpose=Purpose.MARKETING_EMAIL, respond_by=RESPOND_BY)
        expected = new_event(message.topic, model, source=SOURCE, subject="s-1", id=event_id, time=now)
        assert message.value == expected.model_dump_json().encode()
        assert message.topic == command_topic("marketing_email") and message.key == b"s-1"
        assert message.sealed_for is None, "a command without fields carries no personal data"


field_names = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
field_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)


@given(fields=st.dictionaries(field_names, field_values, min_size=1, max_size=5))
def test_rectify_with_its_fields_is_sealed_and_encoded_as_the_model_would(fields: dict[str, str]) -> None:
    command = Command(uuid.uuid4(), "s-2", "accounts", "rectify", None, None, RESPOND_BY, fields)
    event_id, now = str(uuid.uuid4()), datetime.now(UTC)
    message = CommandEncoder().encode(command, source=SOURCE, event_id=event_id, time=now)
    model = PrivacyCommand(command_id=command.command_id, system=SystemId.ACCOUNTS, action=CommandAction.RECTIFY,
                           fields=fields, respond_by=RESPOND_BY)
    assert message.value == new_event(message.topic, model, source=SOURCE, subject="s-2", id=event_id,
                                      time=now).model_dump_json().encode()
    assert message.sealed_for == "s-2", "corrected fields are personal data: sealed with the subject's key"


def test_a_command_the_contract_refuses_is_not_encoded() -> None:
    refused = Command(uuid.uuid4(), "s-1", "marketing_email", "suppress", None, None, RESPOND_BY)
    with pytest.raises(ValidationError):
        CommandEncoder().encode(refused, source=SOURCE)


def test_an_ack_event_round_trips_into_ack_in() -> None:
    command_id = uuid.uuid4()
    event = new_event(PRIVACY_ACKS, PrivacyAck(command_id=command_id, system=SystemId.BILLING, status=AckStatus.FAILED,
                                               detail="account locked"), source="urn:billing", subject="s-3")
    data = parse_event(event.model_dump_json().encode(), PRIVACY_ACKS).data
    ack = AckIn.from_event(data)
    assert ack == AckIn(command_id, "billing", AckStatus.FAILED, "account locked")
    assert isinstance(ack.command_id, uuid.UUID) and ack.status is AckStatus.FAILED


def test_the_outbox_encoder_keys_by_subject_and_seals_only_when_asked() -> None:
    outbox = Outbox(KeyRing(os.urandom(32)), SOURCE)
    status = example_data(DSAR_STATUS)
    event_id, message = outbox.encode(DSAR_STATUS, status, subject="s-4", seal=False)
    assert (message.topic, message.key, message.sealed_for) == (DSAR_STATUS, b"s-4", None)
    assert str(parse_event(message.value, DSAR_STATUS).id) == event_id
    _, sealed = outbox.encode(DSAR_STATUS, status, subject="s-4", key="other")
    assert (sealed.key, sealed.sealed_for) == (b"other", "s-4")


def test_an_answer_is_one_ack_or_an_export_in_parts_that_assemble_to_it() -> None:
    command_id = uuid.uuid4()
    (small,) = ack_events(command_id, "billing", "retained", detail="invoices", retained_basis="bookkeeping_law")
    assert (small.command_id, small.status, small.retained_basis, small.part) == (
        command_id, AckStatus.RETAINED, "bookkeeping_law", None)
    export = {"system": "accounts", "records": [{"n": n, "note": "inloggning åäö" * 20} for n in range(2000)]}
    parts = ack_events(command_id, "accounts", "done", detail="all of it", export=export)
    assert len(parts) > 1 and all(p.export is None and p.chunked for p in parts)
    assert [p.detail for p in parts] == ["all of it"] + [None] * (len(parts) - 1), "the detail comes once"
    assembled = export_chunks.assemble(
        export_chunks.Part(p.part, p.parts, p.export_chunk, p.export_sha256)  # type: ignore[arg-type]  # all set
        for p in parts)
    assert assembled == export_chunks.Complete(export)
