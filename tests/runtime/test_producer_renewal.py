"""A producer that a broker answered with a fatal error is replaced, and the outbox rows it failed to
publish go out through the new one (a real broker, a real aiokafka producer, the real relay).

Seen in a fault run: after the broker had been down for longer than a batch's timeout, it answered
the relay's producer with OutOfOrderSequenceNumber; aiokafka's sender task ends on that error, so
every later pass failed the same way and 565 commands stayed in the outbox. Here the disagreement is
made on purpose: the producer's next sequence number is moved ahead of the broker's."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka.structs import TopicPartition

from devstack.stack import Stack
from privacy_runtime import metrics
from privacy_runtime.audit import AuditTrail
from privacy_runtime.crypto import KeyRing
from privacy_runtime.kafka import PRODUCER_FATAL_ERRORS, RenewingProducer, renewing_producer
from privacy_runtime.outbox import Outbox, OutboxRelay
from privacyctl.config import CtlSettings
from schemas.topics import PRIVACY_AUDIT
from tests.helpers import event_of, scratch_schema, wait_for_messages

pytestmark = pytest.mark.stack

EMPTY_SQL = Path(__file__).with_name("no_service_sql")


async def _break_sequences(producer: RenewingProducer, topic: str) -> None:
    """Move the producer's next sequence on every partition of `topic` ahead of what the broker has."""
    inner = producer.current
    for partition in await inner.partitions_for(topic):
        inner._txn_manager.increment_sequence_number(TopicPartition(topic, partition), 7)


async def test_after_an_out_of_order_sequence_the_relay_publishes_through_a_new_producer(stack: Stack) -> None:
    async with scratch_schema(stack.endpoints.database_url, "renew", EMPTY_SQL) as pool:
        await _relay_through_a_renewed_producer(stack, pool)


async def _relay_through_a_renewed_producer(stack: Stack, pool: asyncpg.Pool) -> None:
    name = uuid.uuid4().hex[:8]
    keyring = KeyRing(os.urandom(32))
    outbox = Outbox(keyring, f"urn:test:{name}")
    trail = AuditTrail(outbox, actor="test")
    producer = renewing_producer(CtlSettings(kafka_bootstrap_servers=stack.endpoints.kafka_bootstrap))
    await producer.start()
    relay = OutboxRelay(pool, producer, outbox)
    refs = [f"renew-{name}-{i}" for i in range(6)]
    # The later entries are about the same subjects, so keyed onto partitions this producer has written
    # to: a broker accepts any sequence on a partition where it knows nothing of the producer.
    subjects = [f"s-renew-{name}-{i % 3}" for i in range(6)]

    async def record(some: list[str]) -> None:
        async with pool.acquire() as conn:
            for ref in some:
                async with conn.transaction():
                    await trail.record(conn, "case_opened", subject=subjects[refs.index(ref)], ref=ref)

    try:
        async with pool.acquire() as conn:
            await keyring.load_lookup_key(conn)
        await record(refs[:3])
        assert await relay.publish_pending() == 3
        first = producer.current
        renewed_before = metrics.KAFKA_PRODUCER_RENEWED._value.get()

        await _break_sequences(producer, PRIVACY_AUDIT)
        await record(refs[3:])
        with pytest.raises(PRODUCER_FATAL_ERRORS):
            await relay.publish_pending()  # the broker refuses; the rows are rolled back into the outbox
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 3

        assert await relay.publish_pending() == 3, "the next pass publishes through a new producer"
        assert producer.current is not first
        assert metrics.KAFKA_PRODUCER_RENEWED._value.get() == renewed_before + 1

        def ours(message: object) -> bool:
            event = event_of(message)
            return event is not None and event["data"].get("ref") in refs

        arrived = await wait_for_messages(stack.endpoints.kafka_bootstrap, PRIVACY_AUDIT, ours, count=6, timeout=60)
        assert {event["data"]["ref"] for event in map(event_of, arrived) if event} == set(refs)
    finally:
        await producer.stop()
