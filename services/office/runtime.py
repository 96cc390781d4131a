"""The office's own runtime: a database schema with the runtime's outbox and audit chain, the outbox
relay, and the Kafka clients for dead letters. Events the office publishes (intake) go through the
outbox in the same transaction as their audit entry, so an intake is never published unaudited or
audited unpublished."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from privacy_runtime.audit import AuditTrail
from privacy_runtime.crypto import KeyRing
from privacy_runtime.db import create_pool
from privacy_runtime.kafka import aiokafka_options, make_producer, wait_for_kafka
from privacy_runtime.migrations import apply_migrations
from privacy_runtime.outbox import Outbox, OutboxRelay
from services.office.deadletters import DeadLetterReader
from services.office.settings import OfficeSettings

log = logging.getLogger(__name__)
NAME = "office"
SQL_DIR = Path(__file__).with_name("migrations")


class OfficeRuntime:
    def __init__(self, settings: OfficeSettings):
        self.settings = settings
        self.keyring = KeyRing(settings.master_key(), settings.previous_master_key())
        self.outbox = Outbox(self.keyring, source=f"urn:isopartner:privacy:{NAME}")
        self.audit = AuditTrail(self.outbox, actor=f"service:{NAME}")
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_letters: DeadLetterReader | None = None
        self._closers: list[object] = []

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "office runtime not started"
        return self._pool

    async def start(self) -> None:
        self._pool = await create_pool(self.settings.database_url, NAME, min_size=1, max_size=5)
        await apply_migrations(self._pool, NAME, SQL_DIR)
        async with self._pool.acquire() as conn:
            await self.keyring.load_lookup_key(conn)
        await wait_for_kafka(self.settings)
        producer = make_producer(self.settings)
        await producer.start()
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                    **aiokafka_options(self.settings))
        await consumer.start()
        self._closers = [consumer, producer]
        self.dead_letters = DeadLetterReader(consumer, producer)
        self._relay = OutboxRelay(self._pool, producer, self.outbox)
        self._tasks.append(asyncio.create_task(self._relay.run(), name="office-outbox-relay"))

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        for client in self._closers:
            with contextlib.suppress(Exception):
                await client.stop()  # type: ignore[attr-defined]
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction whose audit entries are appended at its end; the relay is woken after commit."""
        async with self.pool.acquire() as conn:
            self.audit.begin(conn)
            try:
                async with conn.transaction():
                    yield conn
                    await self.audit.flush(conn)
            finally:
                self.audit.discard(conn)
        self.outbox.wakeup.set()
