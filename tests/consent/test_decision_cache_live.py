"""The decision cache through the real PostgreSQL: notifications, syncs, a lost LISTEN connection, and
the service's answer right after a withdrawal's command left or after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from bench import kafka as bench_kafka
from devstack.stack import Stack
from privacy_runtime.notifications import Listener
from schemas.events import ConsentChanged, ConsentGrant, UserRegistered
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED, command_topic
from services.consent import rules, store
from services.consent.decision_cache import DecisionCache, SubjectView
from tests.helpers import ServiceProcess, get_json, publish, scratch_schema, subject_id, wait_until

pytestmark = pytest.mark.stack

MIGRATIONS = Path(__file__).parents[2] / "services" / "consent" / "migrations"


@contextlib.asynccontextmanager
async def _listening(dsn: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[DecisionCache, Listener]]:
    schema = await pool.fetchval("SELECT current_schema()")
    cache = DecisionCache(100)
    listener = Listener(dsn, f"{schema}_decisions", cache.notified, on_ready=cache.start, on_lost=cache.stop,
                        check_seconds=0.2, timeout_seconds=2.0)
    task = asyncio.create_task(listener.run())

    async def live() -> bool:
        return cache.live

    await wait_until(live, what="the cache's LISTEN connection")
    try:
        yield cache, listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _read(pool: asyncpg.Pool, subject: str) -> SubjectView:
    async with pool.acquire() as conn:
        profile, states = await store.subject_view(conn, subject)
    return SubjectView(profile, states)


async def _grant(conn: asyncpg.Connection, subject: str, granted: bool, entry: str) -> None:
    record = rules.ConsentRecord(f"{entry}:marketing_email", "marketing_email", granted, datetime.now(UTC), "web")
    appended = await store.append_ledger(conn, [(subject, record)])
    await store.save_states(conn, sorted(appended.entry_ids))


async def test_a_committed_change_is_notified_a_rolled_back_one_is_not(stack: Stack) -> None:
    dsn = stack.endpoints.database_url
    async with scratch_schema(dsn, "decisions", MIGRATIONS) as pool, _listening(dsn, pool) as (cache, listener):
        async with pool.acquire() as conn:
            await _grant(conn, "s1", True, "e1")
        assert await listener.sync()
        view = await _read(pool, "s1")
        assert view.states["marketing_email"].granted is True
        assert cache.store("s1", view, cache.begin_read())

        async with pool.acquire() as conn:
            with contextlib.suppress(RuntimeError):
                async with conn.transaction():
                    await _grant(conn, "s1", False, "rolled-back")
                    raise RuntimeError("roll back")
            assert await listener.sync()
            assert cache.get("s1") is view  # nothing committed: nothing to drop

            async with conn.transaction():
                await _grant(conn, "s1", False, "e2")
                assert await listener.sync()
                assert cache.get("s1") is view  # not committed yet: not delivered yet
            assert await listener.sync()  # whatever committed before this has been handled
            assert cache.get("s1") is None
        again = await _read(pool, "s1")
        assert again.states["marketing_email"].granted is False
        assert rules.decide("marketing_email", again.profile, again.states["marketing_email"]).allowed is False  # type: ignore[arg-type]


async def test_every_table_a_decision_reads_notifies(stack: Stack) -> None:
    """Profiles (restriction, objections, country), many subjects at once, erasure and truncation."""
    dsn = stack.endpoints.database_url
    async with scratch_schema(dsn, "decisions", MIGRATIONS) as pool, _listening(dsn, pool) as (cache, listener):
        subjects = [f"many-{i:03d}" for i in range(120)]  # more than one notification's worth
        async with pool.acquire() as conn:
            await store.ensure_subjects(conn, subjects)
            await _grant(conn, "s1", True, "e1")

        async def cached(*names: str) -> None:
            assert await listener.sync()
            for name in names:
                assert cache.store(name, await _read(pool, name), cache.begin_read())

        changes = [
            ("UPDATE subjects SET restricted = true WHERE subject = 's1'", ["s1"]),
            ("UPDATE subjects SET objections = '{marketing}' WHERE subject = 's1'", ["s1"]),
            ("UPDATE subjects SET country = 'US' WHERE subject = ANY($1::text[])", subjects),
            ("SELECT erase_consent_subject('s1', 'digest-s1')", ["s1"]),
            ("TRUNCATE subjects, consent_state CASCADE", subjects[:3]),
        ]
        for sql, touched in changes:
            await cached(*touched)
            async with pool.acquire() as conn:
                await (conn.execute(sql, subjects) if "$1" in sql else conn.execute(sql))
            assert await listener.sync()
            assert [s for s in touched if cache.get(s) is not None] == [], sql


async def test_a_lost_listen_connection_drops_the_cache_until_it_is_back(stack: Stack) -> None:
    dsn = stack.endpoints.database_url
    async with scratch_schema(dsn, "decisions", MIGRATIONS) as pool:
        schema = await pool.fetchval("SELECT current_schema()")
        cache = DecisionCache(100)
        losses: list[bool] = []

        def lost() -> None:
            losses.append(True)
            cache.stop()

        listener = Listener(dsn, f"{schema}_decisions", cache.notified, on_ready=cache.start, on_lost=lost,
                            check_seconds=0.2, timeout_seconds=2.0)
        task = asyncio.create_task(listener.run())
        try:
            async def live() -> bool:
                return cache.live

            await wait_until(live, what="the cache's LISTEN connection")
            async with pool.acquire() as conn:
                await _grant(conn, "s1", True, "e1")
            assert await listener.sync()
            started = cache.begin_read()
            assert cache.store("s1", await _read(pool, "s1"), started)

            killed = await pool.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE application_name = $1", listener.application_name)
            assert killed == 1

            async def dropped() -> bool:
                return bool(losses)

            await wait_until(dropped, what="the lost connection noticed")
            assert cache.get("s1") is None
            async with pool.acquire() as conn:
                await _grant(conn, "s1", False, "e2")  # perhaps while nobody listens
            await wait_until(live, what="LISTEN back")
            assert cache.get("s1") is None
            assert cache.store("s1", SubjectView(None, {}), started) is False  # a read from before the loss
            view = await _read(pool, "s1")
            assert view.states["marketing_email"].granted is False
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _tail(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    partitions = await bench_kafka.partitions(bootstrap, topic)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolved now: nothing published from here on is missed
    return consumer


async def _allowed(client: httpx.AsyncClient, url: str, subject: str, purpose: str) -> bool:
    response = await client.get(f"{url}/v1/decisions", params={"subject": subject, "purpose": purpose})
    assert response.status_code == 200, response.text
    return bool(response.json()["allowed"])


async def _memory_reads(client: httpx.AsyncClient, url: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('privacy_decision_reads_total{source="memory"}'))


async def test_the_service_never_allows_once_the_withdrawals_command_is_out(stack: Stack) -> None:
    """Decisions asked back to back from memory while a withdrawal goes through: none asked after its
    `suppress` reached the command topic is "allowed"; then the service restarts with a change made
    while it was down, and its first answer (a cold cache) is right."""
    bootstrap = stack.endpoints.kafka_bootstrap
    service = ServiceProcess("consent", stack.env()).start()
    try:
        await service.wait_ready()
        subject = subject_id("cache")
        await publish(bootstrap, USER_REGISTERED, UserRegistered(
            email=f"{subject}@example.com", name="Test Person", country="SE", source="web",
            consents=[ConsentGrant(purpose="marketing_email", granted=True),
                      ConsentGrant(purpose="analytics", granted=True)],
        ), subject=subject, time=datetime.now(UTC) - timedelta(minutes=5))
        async with httpx.AsyncClient(timeout=10) as client:
            async def granted() -> bool:
                status, body = await get_json(f"{service.url}/v1/decisions",
                                              params={"subject": subject, "purpose": "marketing_email"})
                return status == 200 and body["allowed"] is True

            await wait_until(granted, what="the grant in the decision API")

            async def from_memory() -> bool:  # the cache is used once its LISTEN connection is up
                before = await _memory_reads(client, service.url)
                assert await _allowed(client, service.url, subject, "marketing_email")
                return await _memory_reads(client, service.url) > before

            await wait_until(from_memory, what="a decision answered from memory")

            answers: list[tuple[float, bool]] = []  # (asked at, allowed)
            stop = asyncio.Event()

            async def ask() -> None:
                while not stop.is_set():
                    asked = time.perf_counter()
                    answers.append((asked, await _allowed(client, service.url, subject, "marketing_email")))

            consumer = await _tail(bootstrap, command_topic("marketing_email"))
            askers = [asyncio.create_task(ask()) for _ in range(4)]
            try:
                await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
                    purpose="marketing_email", granted=False, channel="email_footer", policy_version="2021-10-30",
                ), subject=subject)
                command_seen: float | None = None
                deadline = time.monotonic() + 60
                while command_seen is None and time.monotonic() < deadline:
                    for messages in (await consumer.getmany(timeout_ms=200)).values():
                        for message in messages:
                            data = json.loads(message.value)["data"]
                            if message.key == subject.encode() and data["action"] == "suppress":
                                command_seen = time.perf_counter()
                assert command_seen is not None, "no suppress command within 60 s"
                after = len([1 for asked, _ in answers if asked > command_seen])

                async def some_asked_after() -> bool:
                    return len([1 for asked, _ in answers if asked > command_seen]) >= after + 20

                await wait_until(some_asked_after, what="decisions asked after the command was out")
            finally:
                stop.set()
                await asyncio.gather(*askers)
                await consumer.stop()
            late = [allowed for asked, allowed in answers if asked > command_seen]
            assert late and not any(late), f"{sum(late)} of {len(late)} answers after the command were 'allowed'"
            assert any(allowed for _, allowed in answers)  # asked while still granted, too
            assert await _allowed(client, service.url, subject, "analytics")  # cached again, still granted

        service.stop()
        conn = await asyncpg.connect(stack.endpoints.database_url)
        try:
            await conn.execute("UPDATE consent.consent_state SET granted = false WHERE subject = $1 "
                               "AND purpose = 'analytics'", subject)
        finally:
            await conn.close()
        service = ServiceProcess("consent", stack.env()).start()
        await service.wait_ready()
        async with httpx.AsyncClient(timeout=10) as client:
            assert not await _allowed(client, service.url, subject, "analytics")
    finally:
        service.stop()
