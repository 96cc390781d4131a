"""What a people-facing web app shares with the stream services, without faust: the database pool
(its own schema, migrations at start), the key ring, the outbox and its relay, the audit trail.

Such an app changes things only by publishing events: its handlers write their state and the events
in one unit of work (`transaction()` + `tx.outbox.add`), the relay publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg

from privacy_runtime.audit import AuditTrail
from privacy_runtime.crypto import KeyRing
from privacy_runtime.kafka import RenewingProducer, renewing_producer
from privacy_runtime.migrations import open_service_schema
from privacy_runtime.outbox import Outbox, OutboxRelay, close_publishing
from privacy_runtime.settings import ServiceSettings
from privacy_runtime.unit_of_work import Transaction, open_transaction

log = logging.getLogger(__name__)


class PageRuntime:
    def __init__(self, name: str, settings: ServiceSettings, sql_dir: Path | None, *, publishes: bool = True):
        self.name = name
        self.settings = settings
        self.sql_dir = sql_dir
        self.publishes = publishes
        self.keyring = KeyRing(settings.master_key(), settings.previous_master_key())
        self.outbox = Outbox(self.keyring, source=f"urn:isopartner:privacy:{name}")
        self.audit = AuditTrail(self.outbox, actor=f"service:{name}")
        self.started = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._keystore_pool: asyncpg.Pool | None = None
        self._producer: RenewingProducer | None = None
        self._relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    async def start(self) -> None:
        if self.sql_dir is not None:
            self._pool, self._keystore_pool = await open_service_schema(self.settings, self.name, self.sql_dir,
                                                                        self.keyring)
            if self.publishes:
                self._producer = renewing_producer(self.settings)
                await self._producer.start()
                self._relay = OutboxRelay(self._pool, self._producer, self.outbox)
                self._relay_task = asyncio.create_task(self._relay.run(), name=f"{self.name}-outbox-relay")
        self.started.set()
        log.info("%s started", self.name)

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relay_task
        await close_publishing(self._relay, self._producer, self._pool, self._keystore_pool)

    async def ready(self) -> dict[str, str] | None:
        """The checks /readyz reports, or None when not ready."""
        if not self.started.is_set():
            return None
        if self._pool is None:
            return {"runtime": "started"}
        try:
            async with self._pool.acquire(timeout=1) as conn:
                await conn.fetchval("SELECT 1", timeout=1)
        except Exception:
            return None
        return {"runtime": "started", "database": "ok"}

    def transaction(self, *, locking: Iterable[str | None] = ()) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work (`privacy_runtime.unit_of_work`); after commit the outbox relay is woken at once."""
        return open_transaction(self.pool, self.keyring, self.outbox, self.audit, locking)
