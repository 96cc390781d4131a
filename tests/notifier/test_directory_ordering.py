"""The directory orders registrations by ordering time (privacy_runtime/ordering.py) on a real
database: a registration stamped hours ahead counts as of its arrival, so a later one (and a
rectification made after it) is not undone by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from privacy_runtime.processor import Inbound, RawMessage
from schemas.envelope import new_event
from schemas.events import UserRegistered
from schemas.topics import USER_REGISTERED
from services.notifier.intake import Intake
from tests.notifier.support import Runtime

pytestmark = pytest.mark.stack


def registration(subject: str, email: str, locale: str, stated: datetime, arrived: datetime) -> Inbound:
    event = new_event(USER_REGISTERED, UserRegistered(email=email, locale=locale, country="SE"),
                      subject=subject, source="urn:test", time=stated)
    return Inbound(event, RawMessage(USER_REGISTERED, 0, 0, subject.encode(), b"", [], received_at=arrived))


async def test_a_registration_stamped_ahead_does_not_outrank_a_later_one(runtime: Runtime) -> None:
    intake = Intake(runtime, runtime.settings)
    first_arrival = datetime.now(UTC)
    ahead = registration("s-ahead", "old@example.com", "en", first_arrival + timedelta(hours=12), first_arrival)
    later = registration("s-ahead", "new@example.com", "sv", first_arrival + timedelta(minutes=1),
                         first_arrival + timedelta(minutes=1))
    for item in (ahead, later):
        async with runtime.transaction() as tx:
            await intake.record_registrations(tx, [item])
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM recipients WHERE subject = 's-ahead'")
        email = await runtime.keyring.decrypt(conn, "s-ahead", "email", row["email_sealed"])
    assert (email, row["locale"]) == ("new@example.com", "sv"), "the later registration applies"
    assert row["registered_at"] == later.event.time and row["registration_ordered_at"] == later.event.time

    # Both in one batch: the same answer.
    both = [registration("s-both", "old@example.com", "en", first_arrival + timedelta(hours=12), first_arrival),
            registration("s-both", "new@example.com", "sv", first_arrival + timedelta(minutes=1),
                         first_arrival + timedelta(minutes=1))]
    async with runtime.transaction() as tx:
        await intake.record_registrations(tx, both)
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT locale FROM recipients WHERE subject = 's-both'") == "sv"
