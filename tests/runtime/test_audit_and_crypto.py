"""Audit chain and crypto-shredding against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from devstack.stack import Stack
from privacy_runtime.audit import AuditTrail, entry_hash, verify_chain
from privacy_runtime.crypto import DecryptionFailed, KeyRing, SubjectErased
from privacy_runtime.kafka import renewing_producer
from privacy_runtime.migrations import apply_migrations
from privacy_runtime.outbox import Outbox, OutboxRelay
from privacy_runtime.unit_of_work import open_transaction
from privacyctl.audit import SOURCE_PREFIX, ChainReport, compare_published
from privacyctl.config import CtlSettings

pytestmark = pytest.mark.stack

EMPTY_SQL = Path(__file__).with_name("no_service_sql")


async def _schema(stack: Stack, name: str) -> asyncpg.Pool:
    dsn = stack.endpoints.database_url
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE; CREATE SCHEMA "{name}"')
    await conn.close()
    pool = await asyncpg.create_pool(dsn, server_settings={"search_path": name}, min_size=1, max_size=2)
    assert pool is not None
    await apply_migrations(pool, name, EMPTY_SQL)
    return pool


async def test_tampering_with_one_audit_row_is_named(stack: Stack) -> None:
    pool = await _schema(stack, f"audit_{uuid.uuid4().hex[:8]}")
    keyring = KeyRing(os.urandom(32))
    trail = AuditTrail(Outbox(keyring, "urn:test"), actor="test")
    try:
        async with pool.acquire() as conn:
            for i in range(10):
                async with conn.transaction():
                    await trail.record(conn, "case_opened", subject=f"s{i}", ref=f"r{i}", detail={"n": i})
            checked, problems = await verify_chain(conn)
            assert checked == 10 and problems == []
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("UPDATE audit_log SET action = 'x' WHERE seq = 4")
            # An attacker with owner rights bypasses the trigger: the chain still names the row.
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            await conn.execute("UPDATE audit_log SET detail = $1::jsonb WHERE seq = 6", json.dumps({"n": 999}))
            checked, problems = await verify_chain(conn)
            assert checked == 10
            assert [p.seq for p in problems] == [6], problems
            assert "altered" in problems[0].problem
    finally:
        await pool.close()


async def test_removing_the_newest_entries_or_rewriting_one_is_caught_against_privacy_audit(stack: Stack) -> None:
    """The chain alone cannot tell that its newest rows were removed, nor a last row rewritten and hashed
    again; the entries the service published on privacy-audit (relayed to the real broker) can."""
    name = f"audit_{uuid.uuid4().hex[:8]}"
    pool = await _schema(stack, name)
    keyring = KeyRing(os.urandom(32))
    outbox = Outbox(keyring, f"{SOURCE_PREFIX}{name}")
    trail = AuditTrail(outbox, actor="test")
    kafka = CtlSettings(kafka_bootstrap_servers=stack.endpoints.kafka_bootstrap)
    producer = renewing_producer(kafka)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            await keyring.load_lookup_key(conn)
            for i in range(6):
                async with conn.transaction():
                    await trail.record(conn, "case_opened", subject=f"s{i}", ref=f"r{i}", detail={"n": i})
            async with conn.transaction():
                await trail.record(conn, "seals_anchored", detail={"n": 6})  # no subject: stays in the chain only
        assert await OutboxRelay(pool, producer, outbox).publish_pending() == 6

        async def compared() -> ChainReport:
            report = ChainReport(name)
            async with pool.acquire() as conn:
                await compare_published({name: conn}, {name: report}, kafka)
            return report

        intact = await compared()
        assert intact.problems == [] and intact.published is not None
        assert intact.published.startswith("privacy-audit: 6 published entries compared (newest seq 6)")

        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            await conn.execute("DELETE FROM audit_log WHERE seq >= 5")
            last = await conn.fetchrow("SELECT * FROM audit_log WHERE seq = 4")
            rewritten = {"n": 999}
            await conn.execute(
                "UPDATE audit_log SET detail = $1::jsonb, hash = $2 WHERE seq = 4", json.dumps(rewritten),
                entry_hash(last["prev_hash"], 4, last["at"], last["action"], last["actor"], last["subject"],
                           last["ref"], rewritten))
            assert await verify_chain(conn) == (4, []), "consistent on its own: the chain cannot see this"
        caught = await compared()
        assert [(seq, problem.split(" (")[0]) for seq, problem in caught.problems] == [
            (4, "differs from the entry published on privacy-audit"),
            (5, "published on privacy-audit but missing here"),
            (6, "published on privacy-audit but missing here"),
        ]
    finally:
        await producer.stop()
        await pool.close()


async def test_shredding_a_key_makes_everything_of_the_subject_unreadable(stack: Stack) -> None:
    pool = await _schema(stack, f"crypto_{uuid.uuid4().hex[:8]}")
    keyring = KeyRing(os.urandom(32))
    try:
        async with pool.acquire() as conn:
            await keyring.load_lookup_key(conn)
            sealed = await keyring.encrypt(conn, "alice", "email", "alice@example.com")
            assert b"alice@example.com" not in (sealed or b"")
            assert await keyring.decrypt(conn, "alice", "email", sealed) == "alice@example.com"
            with pytest.raises(DecryptionFailed):
                await keyring.decrypt(conn, "alice", "name", sealed)  # bound to its field
            await keyring.shred_subject(conn, "alice")
            fresh = KeyRing(keyring._master)
            await fresh.load_lookup_key(conn)
            assert await fresh.decrypt(conn, "alice", "email", sealed) is None
            with pytest.raises(SubjectErased):
                await fresh.encrypt(conn, "alice", "email", "again@example.com")
    finally:
        await pool.close()


async def test_master_key_rotation_rewraps_without_touching_data(stack: Stack) -> None:
    pool = await _schema(stack, f"rotate_{uuid.uuid4().hex[:8]}")
    old_key, new_key = os.urandom(32), os.urandom(32)
    try:
        async with pool.acquire() as conn:
            old = KeyRing(old_key)
            await old.load_lookup_key(conn)
            sealed = await old.encrypt(conn, "bob", "name", "Bob Builder")
            await old.shred_subject(conn, "eve")  # a tombstone written before the rotation
            rotated = KeyRing(new_key, previous_master_key=old_key)
            await rotated.load_lookup_key(conn)
            assert await rotated.decrypt(conn, "bob", "name", sealed) == "Bob Builder"  # serving during rotation
            assert await rotated.keys_under_other_masters(conn) == 2  # bob's data key and the lookup key
            async with pool.acquire() as holder, holder.transaction():
                # Another transaction holds bob's key: the pass skips it, and the count says it is left.
                await holder.execute("SELECT 1 FROM subject_keys WHERE subject = 'bob' FOR UPDATE")
                async with conn.transaction():
                    assert await rotated.rewrap_all(conn) == 0
                assert await rotated.keys_under_other_masters(conn) == 1
            async with conn.transaction():
                assert await rotated.rewrap_all(conn) == 1
            assert await rotated.keys_under_other_masters(conn) == 0
            only_new = KeyRing(new_key)
            await only_new.load_lookup_key(conn)
            assert await only_new.decrypt(conn, "bob", "name", sealed) == "Bob Builder"
            # Keyed hashes do not depend on the master key: tombstones and proofs still match.
            assert only_new.subject_digest("eve") == old.subject_digest("eve")
            assert only_new.keyed_hash("email", "Eve@Example.com") == old.keyed_hash("email", "eve@example.com")
            assert await only_new.is_erased(conn, "eve")
            assert base64.b64encode(new_key) != base64.b64encode(old_key)
    finally:
        await pool.close()


async def test_a_key_created_in_a_rolled_back_transaction_is_not_kept(stack: Stack) -> None:
    pool = await _schema(stack, f"pending_{uuid.uuid4().hex[:8]}")
    keyring = KeyRing(os.urandom(32))
    outbox = Outbox(keyring, "urn:test")
    audit = AuditTrail(outbox, actor="test")
    try:
        async with pool.acquire() as conn:
            await keyring.load_lookup_key(conn)
        with pytest.raises(RuntimeError):
            async with open_transaction(pool, keyring, outbox, audit) as tx:
                first = await tx.keys.data_key("carol")
                raise RuntimeError("the transaction fails")
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            second = await tx.keys.data_key("carol")
        assert first != second, "the rolled-back key was not reused"
        assert keyring._cached("carol") == second, "the committed one is cached"
        async with pool.acquire() as conn:
            stored = await KeyRing(keyring._master).data_key(conn, "carol", create=False)
        assert stored == second
    finally:
        await pool.close()


async def test_a_key_shredded_by_another_process_stops_decrypting_here_once_cached_keys_age_out(
    stack: Stack,
) -> None:
    pool = await _schema(stack, f"replica_{uuid.uuid4().hex[:8]}")
    master = os.urandom(32)
    here, replica = KeyRing(master, cache_seconds=0.2), KeyRing(master)
    try:
        async with pool.acquire() as conn:
            await here.load_lookup_key(conn)
            await replica.load_lookup_key(conn)
            pending: dict[str, bytes] = {}
            async with conn.transaction():
                sealed = await here.encrypt(conn, "dana", "email", "dana@example.com", pending)
            here.remember_committed(pending)  # as a unit of work does: the key is cached here now
            assert await here.decrypt(conn, "dana", "email", sealed) == "dana@example.com"
            await replica.shred_subject(conn, "dana")
            await asyncio.sleep(0.3)
            assert await here.decrypt(conn, "dana", "email", sealed) is None
    finally:
        await pool.close()
