"""Graceful shutdown and patient start-up of a service (the consent service as the example).

- SIGTERM while a stream of events is being processed: the process exits 0 within a bound, having
  applied exactly the events whose offsets it committed (nothing applied twice after a restart,
  nothing skipped), with nothing left unpublished in its outbox.
- Start-up with PostgreSQL down, or with the Kafka broker not up yet: the service waits with backoff
  (alive, not ready) and becomes ready once the dependency is there, instead of crashing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.stack import Stack
from devstack.topics import create_topics
from schemas.enums import ConsentChannel, Purpose, RegistrationSource
from schemas.envelope import new_event
from schemas.events import ConsentChanged, ConsentGrant, UserRegistered
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, PRIVACY_ACKS, USER_REGISTERED, command_topic
from tests.helpers import ServiceProcess, get_json, publish, subject_id, wait_until
from tests.security.support import forget, sweep_record

pytestmark = pytest.mark.stack

#: Its own consumer group, so no other consent process of the session shares its partitions.
GROUP = f"privacy-consent-shutdown-{uuid.uuid4().hex[:8]}"
SUBJECTS = 1500  # a registration and an opt-out each: 3000 events, 3000 ledger rows, 1500 commands
SHUTDOWN_BOUND = 15.0  # seconds from SIGTERM to exit
NO_RESEND = {"COMMAND_RESEND_BASE_SECONDS": "3600", "CONSUMER_GROUP": GROUP}


async def _produce(bootstrap: str, prefix: str, placed: dict[str, tuple[TopicPartition, int]]) -> None:
    """Publish the workload over ~3 s, recording where each event landed (topic, partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    base = datetime.now(UTC) - timedelta(hours=1)
    try:
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        for i in range(SUBJECTS):
            subject = f"{prefix}-{i:05d}"
            registered = new_event(USER_REGISTERED, UserRegistered(
                email=f"{subject}@example.com", country="SE", source=RegistrationSource.WEB,
                consents=[ConsentGrant(purpose=Purpose.MARKETING_EMAIL, granted=True)]),
                subject=subject, source="urn:test", time=base)
            opted_out = new_event(CONSENT_CHANGED, ConsentChanged(
                purpose=Purpose.MARKETING_EMAIL, granted=False, channel=ConsentChannel.EMAIL_FOOTER, policy_version="2021-10-30"),
                subject=subject, source="urn:test", time=base + timedelta(minutes=30))
            for event in (registered, opted_out):
                future = await producer.send(event.type, key=subject.encode(), value=event.model_dump_json().encode())
                pending.append((str(event.id), future))
            if i % 50 == 49:
                await asyncio.sleep(0.1)  # a stream, not one burst: SIGTERM lands mid-way
        for event_id, future in pending:
            meta = await future
            placed[event_id] = (TopicPartition(meta.topic, meta.partition), meta.offset)
    finally:
        await producer.stop()


async def _start_group_at_the_end(bootstrap: str) -> None:
    """Commit GROUP's offsets at the current end of every topic the consent service reads, so the
    service sees only this test's events (other tests' events stay on the shared topics)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        wanted = [USER_REGISTERED, CONSENT_CHANGED, DSAR_REQUESTED, PRIVACY_ACKS, command_topic("consent")]
        for topic in wanted:
            consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in wanted for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()


async def _committed(bootstrap: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def _state(dsn: str, prefix: str, event_ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        like = f"{prefix}-%"
        return {
            # Registrations are claimed in processed_events; consent changes are deduplicated by their
            # ledger entry ids ("<event id>:<purpose>").
            "applied": {r["event_id"] for r in await conn.fetch(
                "SELECT event_id FROM consent.processed_events WHERE event_id = ANY($1::text[]) "
                "UNION SELECT split_part(entry_id, ':', 1) FROM consent.consent_ledger "
                "WHERE split_part(entry_id, ':', 1) = ANY($1::text[]) AND channel <> 'registration'",
                event_ids)},
            "ledger_rows": await conn.fetchval(
                "SELECT count(*) FROM consent.consent_ledger WHERE subject LIKE $1", like),
            "distinct_ledger_rows": await conn.fetchval(
                "SELECT count(DISTINCT (subject, effective_at, granted)) FROM consent.consent_ledger "
                "WHERE subject LIKE $1", like),
            "suppress_commands": await conn.fetchval(
                "SELECT count(*) FROM consent.commands WHERE subject LIKE $1 AND action = 'suppress'", like),
            "subjects_with_one_suppress": await conn.fetchval(
                "SELECT count(*) FROM (SELECT subject FROM consent.commands WHERE subject LIKE $1 "
                "AND action = 'suppress' GROUP BY subject HAVING count(*) = 1) s", like),
            "outbox_unpublished": await conn.fetchval(
                "SELECT count(*) FROM consent.outbox WHERE published_at IS NULL"),
        }
    finally:
        await conn.close()


async def _metric(url: str, name: str, topics: tuple[str, ...]) -> float:
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for topic in topics:
        match = re.search(rf'^{name}\{{topic="{re.escape(topic)}"\}} ([0-9.e+]+)$', text, re.M)
        total += float(match.group(1)) if match else 0.0
    return total


async def test_sigterm_drains_commits_and_leaves_nothing_behind(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    dsn = stack.endpoints.database_url
    prefix = subject_id("term")
    placed: dict[str, tuple[TopicPartition, int]] = {}
    await _start_group_at_the_end(bootstrap)
    service = ServiceProcess("consent", stack.env(), NO_RESEND).start()
    try:
        await service.wait_ready()
        producing = asyncio.create_task(_produce(bootstrap, prefix, placed))

        async def under_way() -> bool:
            return (await _state(dsn, prefix, []))["ledger_rows"] >= 200

        await wait_until(under_way, timeout=30, interval=0.05, what="processing to be under way")
        code, took = await asyncio.to_thread(service.terminate, SHUTDOWN_BOUND)
        await producing
        ids = list(placed)
        assert len(ids) == 2 * SUBJECTS

        # What the stopped process left: committed offsets and applied events must say the same thing.
        committed = await _committed(bootstrap)
        after_stop = await _state(dsn, prefix, ids)
        covered = {event_id for event_id, (tp, offset) in placed.items() if offset < committed.get(tp, 0)}
        applied = after_stop["applied"]
        print(f"\nSIGTERM: exit {code} after {took:.2f}s; {len(applied)} of {len(ids)} events applied, "
              f"{len(covered)} covered by committed offsets, outbox unpublished {after_stop['outbox_unpublished']}")
        assert code == 0, service.log_tail()
        assert took < SHUTDOWN_BOUND
        assert 0 < len(applied) < len(ids), "SIGTERM should land while the stream is being processed"
        assert applied - covered == set(), f"{len(applied - covered)} applied events whose offsets were not committed"
        assert covered - applied == set(), f"{len(covered - applied)} committed events that were never applied"
        assert after_stop["outbox_unpublished"] == 0, "the outbox was not drained at shutdown"

        # Restart: the rest is applied, nothing twice, nothing missing, nothing re-delivered.
        service = ServiceProcess("consent", stack.env(), NO_RESEND, port=service.port).start()
        await service.wait_ready()

        async def complete() -> dict[str, Any] | None:
            state = await _state(dsn, prefix, ids)
            return state if len(state["applied"]) == len(ids) and state["suppress_commands"] >= SUBJECTS else None

        await wait_until(complete, timeout=40, interval=0.25, what="the rest of the workload after the restart")

        async def published() -> Any:
            state = await _state(dsn, prefix, ids)
            return state if state["outbox_unpublished"] == 0 else None

        final = await wait_until(published, timeout=10, what="the outbox to be published")
        replayed = await _metric(service.url, "privacy_events_duplicate_total", (USER_REGISTERED, CONSENT_CHANGED))
        print(f"after restart: {len(final['applied'])} applied, ledger {final['ledger_rows']}, "
              f"suppress commands {final['suppress_commands']}, re-delivered duplicates {replayed:.0f}")
        assert final["ledger_rows"] == final["distinct_ledger_rows"] == 2 * SUBJECTS
        assert final["suppress_commands"] == final["subjects_with_one_suppress"] == SUBJECTS
        assert replayed == 0, "the restarted service saw events the stopped one had already applied"
    finally:
        service.stop()


async def _not_ready_while(service: ServiceProcess, seconds: float, log_text: str) -> None:
    """For at least `seconds`, and until the log shows `log_text` (the process saying what it waits
    for): the process stays alive and /readyz never says 200. On a loaded machine the interpreter
    alone may take longer than `seconds` to start, so the log is waited for, not expected on time."""
    assert service.process is not None
    started = time.monotonic()

    def logged() -> bool:
        return log_text in (service.log_path.read_text(errors="replace") if service.log_path else "")

    while time.monotonic() - started < seconds or not logged():
        assert time.monotonic() - started < seconds + 60, f"never logged {log_text!r}:\n{service.log_tail()}"
        assert service.process.poll() is None, f"exited instead of waiting; log:\n{service.log_tail()}"
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                status = (await client.get(f"{service.url}/readyz")).status_code
        except httpx.HTTPError:
            status = 0
        assert status != 200, "ready without its dependency"
        await asyncio.sleep(0.25)


async def _ready_and_working(service: ServiceProcess, bootstrap: str, since: float) -> float:
    """Wait for /readyz, then prove it works end to end; returns seconds from `since` to ready."""
    await service.wait_ready(timeout=40)
    took = time.monotonic() - since
    subject = subject_id("late")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.com", country="SE"),
                  subject=subject)

    async def decided() -> Any:
        status, body = await get_json(f"{service.url}/v1/decisions",
                                      params={"subject": subject, "purpose": "service_delivery"})
        return body if status == 200 else None

    assert (await wait_until(decided, timeout=20, what="a decision after the late start"))["allowed"] is True
    return took


async def _stopping(stop: Callable[[], Awaitable[None]]) -> None:
    try:
        await stop()
    except Exception as exc:  # keep tearing down
        print(f"teardown: {exc!r}")


async def test_start_waits_for_postgres(stack: Stack) -> None:
    root = stack.root / "late-postgres"
    shutil.rmtree(root, ignore_errors=True)
    postgres = PostgresServer(root, durable=False)
    record = None
    service: ServiceProcess | None = None
    try:
        await postgres.start()  # initdb, role, database: a real server that is merely down at start-up
        await postgres.stop()
        service = ServiceProcess("consent", {**stack.env(), "DATABASE_URL": postgres.database_url}, NO_RESEND).start()
        await _not_ready_while(service, 6.0, "database not reachable yet")
        started = time.monotonic()
        await postgres.start()
        record = sweep_record(stack, "late-postgres", "postgres", postgres.pid)
        took = await _ready_and_working(service, stack.endpoints.kafka_bootstrap, started)
        print(f"\nready {took:.1f}s after PostgreSQL came up")
        code, _ = await asyncio.to_thread(service.terminate, SHUTDOWN_BOUND)
        assert code == 0, service.log_tail()
    finally:
        if service is not None:
            service.stop()
        await _stopping(postgres.stop)
        forget(record)


async def test_start_waits_for_kafka(stack: Stack) -> None:
    root = stack.root / "late-kafka"
    shutil.rmtree(root, ignore_errors=True)
    broker = KafkaBroker(root, cache_dir=stack.cache_dir, num_partitions=2, heap="256m")  # ports picked, not up
    record = None
    service: ServiceProcess | None = None
    try:
        service = ServiceProcess("consent", {**stack.env(), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap},
                                 NO_RESEND).start()
        await _not_ready_while(service, 5.0, "not usable yet")
        started = time.monotonic()
        await broker.start()
        record = sweep_record(stack, "late-kafka", "kafka-late", broker.pid)
        await create_topics(broker.bootstrap, partitions=2)
        took = await _ready_and_working(service, broker.bootstrap, started)
        print(f"\nready {took:.1f}s after the broker was started")
        code, _ = await asyncio.to_thread(service.terminate, SHUTDOWN_BOUND)
        assert code == 0, service.log_tail()
    finally:
        if service is not None:
            service.stop()
        await _stopping(broker.stop)
        forget(record)
