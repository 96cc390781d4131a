"""dsar's view of an answer on `privacy-acks` (services/dsar/effects.py `Answer`): built from the event
through the one ack decoder, or as a failure the service itself decides; pure, no database."""

from __future__ import annotations

import uuid

from privacy_runtime.command_codec import AckIn
from schemas.enums import AckStatus, SystemId
from schemas.events import PrivacyAck
from services.dsar.effects import Answer


def test_an_answer_from_an_ack_event_keeps_what_the_case_needs() -> None:
    command_id = uuid.uuid4()
    ack = PrivacyAck(command_id=command_id, system=SystemId.BILLING, status=AckStatus.RETAINED,
                     retained_basis="bookkeeping_law", detail="invoices kept")
    answer = Answer.from_event(ack)
    assert answer.ack == AckIn(command_id, "billing", AckStatus.RETAINED, "invoices kept")
    assert (answer.export, answer.retained_basis, answer.problem) == (None, "bookkeeping_law", None)


def test_an_unusable_answer_fails_with_its_reason_for_the_operator() -> None:
    command_id = uuid.uuid4()
    answer = Answer.unusable(command_id, "accounts", "only 2 of 3 parts arrived")
    assert answer.ack == AckIn(command_id, "accounts", AckStatus.FAILED, "only 2 of 3 parts arrived")
    assert answer.problem == "only 2 of 3 parts arrived" and answer.export is None
