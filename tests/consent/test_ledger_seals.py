"""The consent ledger is tamper-evident: a changed, removed or added row, or a changed seal, is named
by the verification; an erasure is not mistaken for tampering."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from privacy_runtime.audit import verify_chain
from privacy_runtime.unit_of_work import PoolRuntime
from services.consent import seals, store
from services.consent.rules import ConsentRecord
from services.consent.settings import ConsentSettings

pytestmark = pytest.mark.stack

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)



def _entries(subject: str, count: int) -> list[tuple[str, ConsentRecord]]:
    return [(subject, ConsentRecord(f"{uuid.uuid4()}:marketing_email", "marketing_email", n % 2 == 0,
                                    T0 + timedelta(minutes=n), "preference_center", "2021-10-30"))
            for n in range(count)]


async def _tamper(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """As someone who can change the database's rules would: the append-only trigger is switched off."""
    async with conn.transaction():
        await conn.execute("ALTER TABLE consent_ledger DISABLE TRIGGER consent_ledger_no_update")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE consent_ledger ENABLE TRIGGER consent_ledger_no_update")


async def _verify(conn: asyncpg.Connection) -> list[str]:
    return [p.problem for p in (await seals.verify(conn)).problems]


async def test_appended_batches_are_sealed_anchored_and_verify(pool: asyncpg.Pool) -> None:
    runtime = PoolRuntime("consent", ConsentSettings(privacy_master_key=base64.b64encode(os.urandom(32)).decode()), pool)
    async with pool.acquire() as conn:
        first = (await store.append_ledger(conn, _entries("u1", 3) + _entries("u2", 2))).entry_ids
        again = (await store.append_ledger(conn, _entries("u3", 1))).entry_ids
        # A re-delivered batch appends nothing and leaves no seal.
        assert (await store.append_ledger(conn, [("u1", ConsentRecord(next(iter(first)), "marketing_email", True,
                                                                          T0, "api"))])).entry_ids == set()
        assert len(first) == 5 and len(again) == 1
        report = await seals.verify(conn)
        assert (report.rows_checked, report.seals_checked, report.not_anchored_yet) == (6, 2, 2)
        assert report.problems == []
        async with runtime.transaction() as tx:
            assert await seals.anchor(tx) == 2
        async with runtime.transaction() as tx:
            assert await seals.anchor(tx) == 0, "nothing new to anchor"
        report = await seals.verify(conn)
        assert report.not_anchored_yet == 0 and report.problems == []
        assert (await verify_chain(conn))[1] == [], "the anchor is an entry of the audit chain"


async def test_a_changed_row_a_removed_row_and_a_changed_seal_are_named(pool: asyncpg.Pool) -> None:
    runtime = PoolRuntime("consent", ConsentSettings(privacy_master_key=base64.b64encode(os.urandom(32)).decode()), pool)
    async with pool.acquire() as conn:
        await store.append_ledger(conn, _entries("u1", 3))
        async with runtime.transaction() as tx:
            await seals.anchor(tx)
        victim = await conn.fetchrow("SELECT id, entry_id FROM consent_ledger ORDER BY id LIMIT 1")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE consent_ledger SET granted = NOT granted WHERE id = $1", victim["id"])
        await _tamper(conn, "UPDATE consent_ledger SET granted = NOT granted WHERE id = $1", victim["id"])
        problems = await _verify(conn)
        assert any(f"ledger row {victim['id']} ({victim['entry_id']})" in p for p in problems), problems

        # ... and covers it by fixing its hash too: the seal says so.
        await _tamper(conn, "UPDATE consent_ledger SET row_hash = consent_ledger_row_hash(entry_id, subject, purpose, "
                            "granted, channel, policy_version, jurisdiction, effective_at) WHERE id = $1", victim["id"])
        problems = await _verify(conn)
        assert len(problems) == 1 and "3 rows where 3 were sealed, or rows changed since" in problems[0]

        async with conn.transaction():  # ... and then the seal: the audit chain's anchor says so
            await conn.execute(
                "UPDATE ledger_seals SET digest = sha256(string_agg_bytes) FROM (SELECT string_agg(row_hash, "
                "''::bytea ORDER BY row_hash) AS string_agg_bytes FROM consent_ledger) t")
        problems = await _verify(conn)
        assert len(problems) == 1 and "ledger anchor" in problems[0], problems

        await conn.execute("DELETE FROM ledger_seals")  # ... and removes the seals: rows without a seal
        assert any("rows without a seal" in p for p in await _verify(conn))


async def test_an_erasure_keeps_the_batches_verifiable(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.append_ledger(conn, _entries("u1", 2) + _entries("gone", 2))
        assert await store.erase_subject(conn, "gone", "digest-of-gone") == 2
        assert await conn.fetchval("SELECT count(*) FROM consent_ledger WHERE subject = 'gone'") == 0
        report = await seals.verify(conn)
        assert report.problems == [] and report.rows_checked == 4
        hashes = await conn.fetch("SELECT row_hash FROM erased_ledger_rows")
        assert len(hashes) == 2 and all(len(bytes(r["row_hash"])) == 32 for r in hashes)


def test_seal_and_anchor_digests_do_not_depend_on_order() -> None:
    hashes = [os.urandom(32) for _ in range(5)]
    assert seals.seal_digest(hashes) == seals.seal_digest(list(reversed(hashes)))
    batches = [(uuid.uuid4(), 3, os.urandom(32)) for _ in range(3)]
    assert seals.anchor_digest(batches) == seals.anchor_digest(batches[::-1])
    assert seals.anchor_digest(batches) != seals.anchor_digest(batches[:2])


async def test_a_removed_or_added_row_is_named_by_its_batch(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.append_ledger(conn, _entries("u1", 3))
        batch = await conn.fetchval("SELECT batch FROM ledger_seals")
        await _tamper(conn, "DELETE FROM consent_ledger WHERE id = (SELECT min(id) FROM consent_ledger)")
        assert [p for p in await _verify(conn) if f"ledger batch {batch}" in p and "2 rows where 3" in p]

        # A row slipped in under the same batch, hash and all, is one too many for its seal.
        await _tamper(conn, "INSERT INTO consent_ledger (entry_id, subject, purpose, granted, channel, effective_at, "
                            "row_hash, sealed_in) SELECT 'forged:marketing_email', 'u1', 'marketing_email', true, 'api', "
                            "now(), consent_ledger_row_hash('forged:marketing_email', 'u1', 'marketing_email', true, "
                            "'api', NULL, NULL, now()), $1", batch)
        problems = await _verify(conn)
        assert [p for p in problems if f"ledger batch {batch}" in p], problems
