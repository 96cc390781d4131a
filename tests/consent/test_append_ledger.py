"""One statement appends a batch to the ledger, reads the state it moves from and skips erased subjects."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.consent import store
from services.consent.rules import ConsentRecord

pytestmark = pytest.mark.stack

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _record(purpose: str, granted: bool, minutes: int = 0) -> ConsentRecord:
    return ConsentRecord(f"{uuid.uuid4()}:{purpose}", purpose, granted, T0 + timedelta(minutes=minutes), "api")


async def test_the_states_returned_are_those_before_the_append(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        granted = _record("marketing_email", True)
        first = await store.append_ledger(conn, [("u1", granted)])
        assert first.states == {}, "nothing stored yet"
        await store.save_states(conn, sorted(first.entry_ids))

        withdrawn = _record("marketing_email", False, 1)
        other = _record("analytics", True, 1)
        newcomer = _record("analytics", True)
        second = await store.append_ledger(conn, [("u1", withdrawn), ("u1", other), ("u2", newcomer)])
        assert second.entry_ids == {withdrawn.event_id, other.event_id, newcomer.event_id}
        assert set(second.states) == {("u1", "marketing_email")}, "only purposes given, only those stored"
        assert second.states[("u1", "marketing_email")].event_id == granted.event_id
        assert second.states[("u1", "marketing_email")].granted is True
        assert second.erased == set()


async def test_entries_of_an_erased_subject_are_not_appended(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO erased_subjects (subject_digest) VALUES ('digest-of-gone')")
        kept = _record("marketing_email", False)
        late = _record("marketing_email", False)
        done = await store.append_ledger(conn, [("alive", kept), ("gone", late)], ["digest-of-alive", "digest-of-gone"])
        assert done.entry_ids == {kept.event_id}
        assert done.erased == {"digest-of-gone"}
        assert await conn.fetchval("SELECT count(*) FROM subjects WHERE subject = 'gone'") == 0, "not brought back"
        assert await conn.fetchval("SELECT count(*) FROM consent_ledger WHERE subject = 'gone'") == 0

        only_erased = await store.append_ledger(conn, [("gone", _record("analytics", True))], ["digest-of-gone"])
        assert (only_erased.entry_ids, only_erased.erased) == (set(), {"digest-of-gone"})
        assert await conn.fetchval("SELECT count(*) FROM ledger_seals") == 1, "no seal over nothing"

        unchecked = await store.append_ledger(conn, [("gone2", _record("analytics", True))])
        assert len(unchecked.entry_ids) == 1 and unchecked.erased == set(), "no digests: no check"
