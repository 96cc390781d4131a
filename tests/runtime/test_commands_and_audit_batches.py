"""Command tracking and audit batching against a real PostgreSQL: what a batch of acks records, and
that entries collected in one transaction form one unbroken chain."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from devstack.stack import Stack
from privacy_runtime.audit import verify_chain
from privacy_runtime.command_codec import AckIn
from privacy_runtime.commands import CommandPolicy, CommandSpec, CommandTracker
from privacy_runtime.crypto import open_sealed
from privacy_runtime.outbox import _RELAY_LOCK_KEY, OutboxRelay
from privacy_runtime.subject_locks import lock_subjects
from privacy_runtime.unit_of_work import open_transaction
from schemas.enums import AckStatus
from schemas.envelope import CloudEvent, parse_event
from schemas.events import PrivacyAck
from tests.runtime.test_audit_and_crypto import scratch_parts

pytestmark = pytest.mark.stack


async def test_a_batch_of_acks_counts_the_first_answer_of_each_own_command_once(stack: Stack) -> None:
    pool, keyring, outbox, audit = await scratch_parts(stack, "acks")
    tracker = CommandTracker(CommandPolicy())
    request_id = str(uuid.uuid4())
    try:
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            conn = tx.conn
            erase, suppress = await tracker.issue_many(tx, [
                CommandSpec("s1", "accounts", "erase", request_id=request_id),
                CommandSpec("s1", "marketing_email", "suppress", purpose="marketing_email"),
            ])
            again = await tracker.issue_many(tx, [
                CommandSpec("s1", "accounts", "erase", request_id=request_id, command_id=erase)])
            assert again == [erase]
            assert await conn.fetchval("SELECT count(*) FROM commands") == 2, "a decided id is issued once"
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 2

            acks = await tracker.acknowledge_many(tx, [
                AckIn(uuid.UUID(erase), "accounts", AckStatus.DONE),
                AckIn(uuid.UUID(erase), "accounts", AckStatus.DONE, "a repeat in the same batch"),
                AckIn(uuid.UUID(suppress), "billing", AckStatus.DONE),  # names the wrong system
                AckIn(uuid.uuid4(), "accounts", AckStatus.DONE),        # another service's command
            ])
            first, repeat, wrong, foreign = acks
            assert first is not None and first.first and first.request_id == request_id and first.action == "erase"
            assert repeat is not None and not repeat.first
            assert wrong is None and foreign is None
            with pytest.raises(ValidationError):  # an id that is no UUID never reaches the tracker
                PrivacyAck.model_validate({"command_id": "not-a-uuid", "system": "accounts", "status": "done"})
            rows = {str(r["command_id"]): r for r in await conn.fetch("SELECT * FROM commands")}
            assert rows[erase]["ack_status"] == "done" and rows[erase]["acked_at"] is not None
            assert rows[suppress]["acked_at"] is None, "an ack naming another system settles nothing"

            later = await tracker.acknowledge_many(tx, [AckIn(uuid.UUID(erase), "accounts", AckStatus.FAILED)])
            assert later[0] is not None and not later[0].first
            assert await conn.fetchval("SELECT ack_status FROM commands WHERE command_id = $1",
                                       uuid.UUID(erase)) == "done", "the first answer stands"
    finally:
        await pool.close()


async def test_entries_collected_in_a_transaction_extend_the_chain_in_order(stack: Stack) -> None:
    pool, keyring, outbox, trail = await scratch_parts(stack, "batch")
    try:
        async with pool.acquire() as conn:
            await trail.record(conn, "before", subject="s0", ref="r0")  # appended at once
        async with open_transaction(pool, keyring, outbox, trail) as tx:
            for i in range(1, 4):
                await tx.audit.record(f"step{i}", subject=f"s{i}", ref=f"r{i}", detail={"n": i})
            await tx.audit.record("unpublished", ref="no-subject")
            assert await tx.conn.fetchval("SELECT count(*) FROM audit_log") == 1, "held until the commit"
        with pytest.raises(RuntimeError):
            async with open_transaction(pool, keyring, outbox, trail) as tx:
                await tx.audit.record("rolled_back", subject="s9", ref="r9")
                raise RuntimeError("the transaction fails")
        async with pool.acquire() as conn:
            actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY seq")]
            assert actions == ["before", "step1", "step2", "step3", "unpublished"]
            checked, problems = await verify_chain(conn)
            assert checked == 5 and problems == []
            published = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'privacy-audit'")
            assert published == 4, "an entry without a subject stays in the chain only"
    finally:
        await pool.close()


async def test_a_newer_opt_out_or_opt_in_supersedes_the_one_still_outstanding(stack: Stack) -> None:
    """A withdrawal the system has not answered, then a new grant: only the unsuppress is re-sent, so the
    system cannot end on the older answer. Other systems, purposes and kinds of command are untouched."""
    pool, keyring, outbox, audit = await scratch_parts(stack, "supersede")
    tracker = CommandTracker(CommandPolicy())
    try:
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            conn = tx.conn
            suppress, revoke, erase = await tracker.issue_many(tx, [
                CommandSpec("s1", "marketing_email", "suppress", purpose="marketing_email"),
                CommandSpec("s1", "partners", "revoke_sharing", purpose="partner_sharing"),
                CommandSpec("s1", "accounts", "erase", request_id=str(uuid.uuid4())),
            ])
            other = (await tracker.issue_many(tx, [
                CommandSpec("s2", "marketing_email", "suppress", purpose="marketing_email")]))[0]
            # Two requests' steps (dsar: Art. 17(2) revoke_sharing): each is waited for by its own case.
            first_case, second_case = await tracker.issue_many(tx, [
                CommandSpec("s1", "partners", "revoke_sharing", purpose="partner_sharing", request_id=str(uuid.uuid4())),
                CommandSpec("s1", "partners", "revoke_sharing", purpose="partner_sharing", request_id=str(uuid.uuid4())),
            ])
        async with open_transaction(pool, keyring, outbox, audit) as tx:  # the grant comes in a later transaction
            conn = tx.conn
            unsuppress = (await tracker.issue_many(tx, [
                CommandSpec("s1", "marketing_email", "unsuppress", purpose="marketing_email")]))[0]
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            conn = tx.conn
            await conn.execute("UPDATE commands SET next_attempt_at = now() - interval '1 minute'")
            await conn.execute("DELETE FROM outbox")
            assert await tracker.resend_due(tx) == 6
            resent = {str(uuid.UUID(json.loads(bytes(r["value"]))["data"]["command_id"]))
                      for r in await conn.fetch("SELECT value FROM outbox")}
            assert resent == {revoke, erase, other, unsuppress, first_case, second_case}, \
                "the withdrawal the grant followed is not re-sent; the cases' steps are"
            rows = {str(r["command_id"]): r for r in await conn.fetch("SELECT * FROM commands")}
            assert rows[suppress]["ack_status"] == "superseded" and rows[suppress]["acked_at"] is not None
            for outstanding in (revoke, erase, other, unsuppress):
                assert rows[outstanding]["acked_at"] is None, outstanding

        # While s1's events are being applied elsewhere, its opt-outs wait for the next pass.
        async with pool.acquire() as busy, busy.transaction():
            await lock_subjects(busy, ["s1"])
            async with open_transaction(pool, keyring, outbox, audit) as tx:
                conn = tx.conn
                await conn.execute("UPDATE commands SET next_attempt_at = now() - interval '1 minute'")
                await conn.execute("DELETE FROM outbox")
                await tracker.resend_due(tx)
                resent = {str(uuid.UUID(json.loads(bytes(r["value"]))["data"]["command_id"]))
                          for r in await conn.fetch("SELECT value FROM outbox")}
                assert resent == {erase, other, first_case, second_case}
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            conn = tx.conn
            late = await tracker.acknowledge_many(tx, [AckIn(uuid.UUID(suppress), "marketing_email", AckStatus.DONE)])
            assert late[0] is not None and not late[0].first, "its late answer settles nothing more"
    finally:
        await pool.close()


async def test_one_relay_at_a_time_publishes_a_schemas_outbox(stack: Stack) -> None:
    """While one process relays (holds the schema's relay lock), another's pass takes nothing, so two
    relays never publish one subject's events out of order."""
    pool, keyring, outbox, audit = await scratch_parts(stack, "relay")
    tracker = CommandTracker(CommandPolicy())
    other_process = OutboxRelay(pool, None, outbox)  # type: ignore[arg-type]  # never reaches the producer
    try:
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            conn = tx.conn
            await tracker.issue_many(tx, [CommandSpec("s1", "marketing_email", "suppress", purpose="marketing_email")])
        async with pool.acquire() as relaying, relaying.transaction():
            await relaying.execute("SELECT pg_advisory_xact_lock($1::int, hashtext(current_schema()))",
                                   _RELAY_LOCK_KEY)
            assert await other_process.publish_pending() == 0
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 1, "left for the relay that holds the lock"
    finally:
        await pool.close()


async def test_issue_many_queues_the_new_commands_events_in_order_and_no_repeat(stack: Stack) -> None:
    """The commands and their events go in one statement: an id issued before queues nothing, and the
    new ones' events are queued in the order given (a suppress before a later unsuppress)."""
    pool, keyring, outbox, audit = await scratch_parts(stack, "issue_order")
    tracker = CommandTracker(CommandPolicy())
    try:
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            (decided,) = await tracker.issue_many(tx, [CommandSpec("s1", "accounts", "erase",
                                                                   request_id=str(uuid.uuid4()))])
            await tx.conn.execute("DELETE FROM outbox")
            ids = await tracker.issue_many(tx, [
                CommandSpec("s2", "marketing_email", "suppress", purpose="marketing_email"),
                CommandSpec("s1", "accounts", "erase", command_id=decided),
                CommandSpec("s2", "marketing_email", "unsuppress", purpose="marketing_email"),
                CommandSpec("s3", "analytics", "suppress", purpose="analytics"),
            ])
            assert ids[1] == decided
            queued = [parse_event(bytes(r["value"]), r["topic"])
                      for r in await tx.conn.fetch("SELECT topic, value FROM outbox ORDER BY id")]
            assert [str(e.data.command_id) for e in queued] == [ids[0], ids[2], ids[3]]
            assert [e.data.action for e in queued] == ["suppress", "unsuppress", "suppress"]
            assert await tx.conn.fetchval("SELECT count(*) FROM commands") == 4
    finally:
        await pool.close()


async def test_issue_issue_many_and_resend_encode_a_command_alike(stack: Stack) -> None:
    """Every path that sends a command writes it through the one encoder: a re-send differs from the
    issued event in its id and time only, and rectify's fields stay sealed on both."""
    pool, keyring, outbox, audit = await scratch_parts(stack, "encode")
    tracker = CommandTracker(CommandPolicy())

    async def sent(conn: asyncpg.Connection) -> dict[str, CloudEvent[Any]]:
        events = {}
        for row in await conn.fetch("SELECT topic, subject, value FROM outbox ORDER BY id"):
            value = bytes(row["value"])
            if row["subject"] is not None:
                key = await keyring.data_key(conn, row["subject"], create=False)
                assert key is not None
                value = open_sealed(key, value, f"outbox:{row['subject']}".encode())
            event = parse_event(value, row["topic"])
            events[str(event.data.command_id)] = event
        return events

    try:
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            one = await tracker.issue(tx, subject="s1", system="marketing_email", action="suppress",
                                      purpose="marketing_email")
            rectify = await tracker.issue(tx, subject="s1", system="accounts", action="rectify",
                                          fields={"email": "new@example.com"})
            (many,) = await tracker.issue_many(tx, [CommandSpec("s2", "marketing_email", "suppress",
                                                                purpose="marketing_email")])
            assert await tx.conn.fetchval("SELECT count(*) FROM outbox WHERE subject IS NOT NULL") == 1, \
                "only rectify, which carries personal data, is sealed"
            issued = await sent(tx.conn)
        async with open_transaction(pool, keyring, outbox, audit) as tx:
            await tx.conn.execute("UPDATE commands SET next_attempt_at = now() - interval '1 minute'")
            await tx.conn.execute("DELETE FROM outbox")
            assert await tracker.resend_due(tx) == 3
            assert await tx.conn.fetchval("SELECT count(*) FROM outbox WHERE subject IS NOT NULL") == 1
            resent = await sent(tx.conn)
        assert set(issued) == set(resent) == {one, rectify, many}
        for command_id in issued:
            first, again = issued[command_id], resent[command_id]
            assert first.id != again.id
            assert first.model_dump(exclude={"id", "time"}) == again.model_dump(exclude={"id", "time"}), command_id
        assert issued[rectify].data.fields == {"email": "new@example.com"}
    finally:
        await pool.close()
