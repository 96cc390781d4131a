"""Command tracking and audit batching against a real PostgreSQL: what a batch of acks records, and
that entries collected in one transaction form one unbroken chain."""

from __future__ import annotations

import os
import uuid

import pytest

from privacy_runtime.audit import AuditTrail, verify_chain
from privacy_runtime.commands import AckIn, CommandPolicy, CommandSpec, CommandTracker
from privacy_runtime.crypto import KeyRing
from privacy_runtime.outbox import Outbox
from tests.runtime.test_audit_and_crypto import _schema

pytestmark = pytest.mark.stack


async def test_a_batch_of_acks_counts_the_first_answer_of_each_own_command_once(stack) -> None:  # type: ignore[no-untyped-def]
    pool = await _schema(stack, f"acks_{uuid.uuid4().hex[:8]}")
    keyring = KeyRing(os.urandom(32))
    outbox = Outbox(keyring, "urn:test")
    tracker = CommandTracker(outbox, AuditTrail(outbox, "test"), keyring, CommandPolicy())
    request_id = str(uuid.uuid4())
    try:
        async with pool.acquire() as conn, conn.transaction():
            erase, suppress = await tracker.issue_many(conn, [
                CommandSpec("s1", "accounts", "erase", request_id=request_id),
                CommandSpec("s1", "marketing_email", "suppress", purpose="marketing_email"),
            ])
            again = await tracker.issue_many(conn, [
                CommandSpec("s1", "accounts", "erase", request_id=request_id, command_id=erase)])
            assert again == [erase]
            assert await conn.fetchval("SELECT count(*) FROM commands") == 2, "a decided id is issued once"
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 2

            acks = await tracker.acknowledge_many(conn, [
                AckIn(erase, "accounts", "done"),
                AckIn(erase, "accounts", "done", "a repeat in the same batch"),
                AckIn(suppress, "billing", "done"),           # names the wrong system
                AckIn(str(uuid.uuid4()), "accounts", "done"),  # another service's command
                AckIn("not-a-uuid", "accounts", "done"),
            ])
            first, repeat, wrong, foreign, garbage = acks
            assert first is not None and first.first and first.request_id == request_id and first.action == "erase"
            assert repeat is not None and not repeat.first
            assert wrong is None and foreign is None and garbage is None
            rows = {str(r["command_id"]): r for r in await conn.fetch("SELECT * FROM commands")}
            assert rows[erase]["ack_status"] == "done" and rows[erase]["acked_at"] is not None
            assert rows[suppress]["acked_at"] is None, "an ack naming another system settles nothing"

            later = await tracker.acknowledge_many(conn, [AckIn(erase, "accounts", "failed")])
            assert later[0] is not None and not later[0].first
            assert await conn.fetchval("SELECT ack_status FROM commands WHERE command_id = $1",
                                       uuid.UUID(erase)) == "done", "the first answer stands"
    finally:
        await pool.close()


async def test_entries_collected_in_a_transaction_extend_the_chain_in_order(stack) -> None:  # type: ignore[no-untyped-def]
    pool = await _schema(stack, f"batch_{uuid.uuid4().hex[:8]}")
    keyring = KeyRing(os.urandom(32))
    trail = AuditTrail(Outbox(keyring, "urn:test"), actor="test")
    try:
        async with pool.acquire() as conn:
            await trail.record(conn, "before", subject="s0", ref="r0")  # appended at once
            async with conn.transaction():
                trail.begin(conn)
                for i in range(1, 4):
                    await trail.record(conn, f"step{i}", subject=f"s{i}", ref=f"r{i}", detail={"n": i})
                await trail.record(conn, "unpublished", ref="no-subject")
                assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1, "held until the flush"
                await trail.flush(conn)
            async with conn.transaction():
                trail.begin(conn)
                await trail.record(conn, "rolled_back", subject="s9", ref="r9")
                trail.discard(conn)  # what the runtime does when the transaction fails
            actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY seq")]
            assert actions == ["before", "step1", "step2", "step3", "unpublished"]
            checked, problems = await verify_chain(conn)
            assert checked == 5 and problems == []
            published = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'privacy-audit'")
            assert published == 4, "an entry without a subject stays in the chain only"
    finally:
        await pool.close()
