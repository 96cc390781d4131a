"""Events about one subject are applied one transaction at a time, whatever topic they came on; events
about other subjects do not wait for them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from privacy_runtime.processor import Inbound, RawMessage, StreamProcessor
from privacy_runtime.settings import ServiceSettings
from privacy_runtime.subject_locks import lock_statement, lock_subjects, try_lock_subjects
from privacy_runtime.unit_of_work import PoolRuntime, UnitOfWork
from tests.helpers import TEST_MASTER_KEY, scratch_schema

pytestmark = pytest.mark.stack

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "consent" / "migrations"

#: Ids as a producer might send them: quotes, braces and backslashes that could end an SQL or array
#: literal, non-ASCII, and the empty string.
ODD_SUBJECTS = ["usr_plain", "o'brien", 'a"b', "{x,y}", "back\\slash", "'; DROP TABLE subjects; --", "Åsa ☃", ""]


def _event(topic: str, subject: str) -> Inbound:
    event = SimpleNamespace(id=str(uuid.uuid4()), subject=subject, time=datetime.now(UTC))
    return Inbound(event, RawMessage(topic, 0, 0, subject.encode(), b"{}", []))


@pytest.fixture
async def runtime(stack: Stack) -> AsyncIterator[PoolRuntime]:
    async with scratch_schema(stack.endpoints.database_url, "subject_locks", MIGRATIONS, max_size=4) as pool:
        runtime = PoolRuntime("consent", ServiceSettings(privacy_master_key=TEST_MASTER_KEY), pool)
        await runtime.start()
        yield runtime


async def test_a_subject_waits_for_its_own_transaction_on_another_topic_only(runtime: PoolRuntime) -> None:
    steps: list[str] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow_registration(tx: UnitOfWork, batch: list[Inbound]) -> None:
        steps.append("registration started")
        started.set()
        await gate.wait()
        steps.append("registration committed")

    async def change(tx: UnitOfWork, batch: list[Inbound]) -> None:
        steps.append(f"change of {batch[0].event.subject}")

    registrations: Any = StreamProcessor(runtime, "user-registered", slow_registration)
    changes: Any = StreamProcessor(runtime, "consent-changed", change)
    first = asyncio.create_task(registrations.apply([_event("user-registered", "usr_a")]))
    try:
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(changes.apply([_event("consent-changed", "usr_b")]), 10)  # another subject
        same_subject = asyncio.create_task(changes.apply([_event("consent-changed", "usr_a")]))
        await asyncio.sleep(0.5)
        assert steps == ["registration started", "change of usr_b"]
    finally:
        gate.set()  # a failed assertion must not leave a transaction open (the pool would never close)
    await asyncio.wait_for(asyncio.gather(first, same_subject), 10)
    assert steps == ["registration started", "change of usr_b", "registration committed", "change of usr_a"]


async def test_a_full_lock_table_is_waited_out_not_dead_lettered(runtime: PoolRuntime) -> None:
    """'out of shared memory' (the lock table is full: each batch holds a lock per subject) is the
    database's momentary limit, not the event's fault: the batch is retried as a whole."""
    calls: list[int] = []

    async def handler(tx: UnitOfWork, batch: list[Inbound]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise asyncpg.exceptions.OutOfMemoryError("out of shared memory")

    dead_lettered: list[str] = []
    runtime.dead_letters = SimpleNamespace(send=lambda **kw: dead_lettered.append(kw["error"]))  # type: ignore[attr-defined]
    processor: Any = StreamProcessor(runtime, "consent-changed", handler)
    await asyncio.wait_for(processor.apply([_event("consent-changed", "usr_c"), _event("consent-changed", "usr_d")]), 10)
    assert calls == [2, 2] and dead_lettered == [], "retried as one batch, nothing dead-lettered"


async def test_the_lock_taken_with_begin_is_the_lock_of_each_subject(runtime: PoolRuntime) -> None:
    """A stream batch takes its subjects' locks in the statement that begins its transaction, the ids
    inlined (hex-encoded): each is the same lock as `lock_subjects` takes, and nothing in an id gets
    out of its literal."""
    async with runtime.transaction(locking=[*ODD_SUBJECTS, None]) as tx:
        async with runtime.pool.acquire() as other, other.transaction():
            assert await try_lock_subjects(other, [*ODD_SUBJECTS, "usr_free"]) == {"usr_free"}
        assert await tx.conn.fetchval("SELECT count(*) FROM subjects") == 0, "the table is still there"
    async with runtime.pool.acquire() as conn, conn.transaction():
        await lock_subjects(conn, ODD_SUBJECTS)
        async with runtime.pool.acquire() as other, other.transaction():
            assert await try_lock_subjects(other, ODD_SUBJECTS) == set()
    async with runtime.pool.acquire() as conn, conn.transaction():
        assert await try_lock_subjects(conn, ODD_SUBJECTS) == set(ODD_SUBJECTS), "released at the end"
    assert lock_statement([None]) is None


async def test_a_transaction_begun_with_its_locks_commits_or_rolls_back_whole(runtime: PoolRuntime) -> None:
    async with runtime.transaction(locking=["usr_kept"]) as tx:
        await tx.conn.execute("INSERT INTO subjects (subject) VALUES ('usr_kept')")
    with pytest.raises(RuntimeError):
        async with runtime.transaction(locking=["usr_lost"]) as tx:
            await tx.conn.execute("INSERT INTO subjects (subject) VALUES ('usr_lost')")
            raise RuntimeError("the handler failed")
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        async with runtime.transaction(locking=["usr_kept"]) as tx:
            await tx.conn.execute("INSERT INTO subjects (subject) VALUES ('usr_kept')")
    async with runtime.pool.acquire() as conn:
        assert [r["subject"] for r in await conn.fetch("SELECT subject FROM subjects")] == ["usr_kept"]
        async with conn.transaction():
            assert await try_lock_subjects(conn, ["usr_kept", "usr_lost"]) == {"usr_kept", "usr_lost"}
