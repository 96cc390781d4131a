"""The unit of work: one database transaction and everything written in it.

A `Transaction` is what every handler, action and operator step receives: its connection, and the
audit trail, outbox and key ring bound to that transaction. What belongs to the transaction lives on
the object itself (the audit entries collected for the commit, the data keys created in it), not in
state the shared objects keep per connection: a key created in a transaction that rolls back is
never cached, and the audit chain's lock is taken once, just before the commit.

`Runtime` is the slice of a service runtime that handlers and loops use; `ServiceRuntime`,
`PageRuntime` and `PoolRuntime` (a pool alone, for tests and tools) implement it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, Unpack

import asyncpg

from privacy_runtime.audit import AuditEntry, AuditTrail, EntryFields
from privacy_runtime.crypto import KeyRing
from privacy_runtime.datamap import DataMap
from privacy_runtime.db import OneTripTransaction
from privacy_runtime.outbox import Outbox, OutboxMessage
from privacy_runtime.settings import ServiceSettings
from privacy_runtime.subject_locks import lock_statement
from schemas.events import EventData


class TransactionKeys:
    """The key ring as seen from one transaction: keys it creates are cached only after its commit."""

    def __init__(self, keyring: KeyRing, conn: asyncpg.Connection):
        self.keyring = keyring
        self.conn = conn
        #: Data keys created in this transaction, by subject.
        self.pending: dict[str, bytes] = {}

    async def data_key(self, subject: str, *, create: bool = True) -> bytes | None:
        return await self.keyring.data_key(self.conn, subject, create=create, pending=self.pending)

    async def ensure_keys(self, subjects: set[str]) -> set[str]:
        """Load or create many subjects' keys (for `encrypt_cached`); the erased ones, which have none."""
        return await self.keyring.ensure_keys(self.conn, subjects, self.pending)

    def encrypt_cached(self, subject: str, field: str, value: str | None) -> bytes | None:
        return self.keyring.encrypt_cached(subject, field, value, self.pending)

    async def encrypt(self, subject: str, field: str, value: str | None) -> bytes | None:
        return await self.keyring.encrypt(self.conn, subject, field, value, self.pending)

    async def decrypt(self, subject: str, field: str, sealed: bytes | None) -> str | None:
        return await self.keyring.decrypt(self.conn, subject, field, sealed, self.pending)

    async def is_erased(self, subject: str) -> bool:
        return await self.keyring.is_erased(self.conn, subject)

    async def erased_among(self, subjects: Iterable[str]) -> dict[str, str]:
        return await self.keyring.erased_among(self.conn, subjects)

    async def shred_subject(self, subject: str) -> bool:
        self.pending.pop(subject, None)
        return await self.keyring.shred_subject(self.conn, subject)

    def subject_digest(self, subject: str) -> str:
        return self.keyring.subject_digest(subject)

    def keyed_hash(self, purpose: str, value: str) -> str:
        return self.keyring.keyed_hash(purpose, value)

    def committed(self) -> None:
        self.keyring.remember_committed(self.pending)
        self.pending.clear()


class TransactionAudit:
    """The audit trail in one transaction: entries are appended together just before its commit."""

    def __init__(self, trail: AuditTrail, conn: asyncpg.Connection, keys: TransactionKeys):
        self.trail = trail
        self.conn = conn
        self.keys = keys
        self.entries: list[AuditEntry] = []

    async def record(self, action: str, **fields: Unpack[EntryFields]) -> None:
        self.entries.append(await self.trail.entry(self.conn, action, pending=self.keys.pending, **fields))

    async def flush(self) -> None:
        entries, self.entries = self.entries, []
        await self.trail.append(self.conn, entries)


class TransactionOutbox:
    """The outbox in one transaction: events are sealed with keys the transaction may have created.

    `write` is the one way in; `add` encodes a contract model (`Outbox.encode`) for it."""

    def __init__(self, outbox: Outbox, conn: asyncpg.Connection, keys: TransactionKeys):
        self.outbox = outbox
        self.conn = conn
        self.keys = keys

    @property
    def source(self) -> str:
        return self.outbox.source

    async def write(self, messages: Sequence[OutboxMessage]) -> None:
        await self.outbox.write(self.conn, messages, pending=self.keys.pending)

    async def columns(self, messages: Sequence[OutboxMessage]) -> list[list[Any]]:
        """The messages as `outbox.queue_statement` takes them, for a statement that queues them itself."""
        return await self.outbox.columns(self.conn, messages, pending=self.keys.pending)

    async def add(self, topic: str, data: EventData, *, subject: str | None, key: str | None = None,
                  event_id: str | None = None, time: datetime | None = None, seal: bool = True) -> str:
        """Queue one event; returns its id."""
        event_id, message = self.outbox.encode(topic, data, subject=subject, key=key, event_id=event_id, time=time,
                                               seal=seal)
        await self.write([message])
        return event_id


class UnitOfWork(Protocol):
    """What a handler gets: one open transaction and the writers bound to it."""

    @property
    def conn(self) -> asyncpg.Connection: ...

    @property
    def keys(self) -> TransactionKeys: ...

    @property
    def audit(self) -> TransactionAudit: ...

    @property
    def outbox(self) -> TransactionOutbox: ...


class Transaction:
    """The one implementation of `UnitOfWork`, opened by `open_transaction`."""

    def __init__(self, conn: asyncpg.Connection, keyring: KeyRing, outbox: Outbox, audit: AuditTrail):
        self.conn = conn
        self.keys = TransactionKeys(keyring, conn)
        self.audit = TransactionAudit(audit, conn, self.keys)
        self.outbox = TransactionOutbox(outbox, conn, self.keys)


@asynccontextmanager
async def open_transaction(pool: asyncpg.Pool, keyring: KeyRing, outbox: Outbox, audit: AuditTrail,
                           locking: Iterable[str | None] = ()) -> AsyncIterator[Transaction]:
    """A unit of work: audit entries appended just before the commit; after it, the keys it created
    are cached and the outbox relay is woken at once.

    `locking`: subjects whose locks (`subject_locks`) the transaction takes before anything else, in
    the same round trip as its BEGIN."""
    async with pool.acquire() as conn:
        tx = Transaction(conn, keyring, outbox, audit)
        async with _begun(conn, lock_statement(locking)):
            yield tx
            await tx.audit.flush()
        tx.keys.committed()
    outbox.wakeup.set()


@asynccontextmanager
async def _begun(conn: asyncpg.Connection, first: str | None) -> AsyncIterator[None]:
    """A transaction whose BEGIN carries its first statement (`first`, no parameters): for a batch of a
    few events, each round trip is a good part of its latency."""
    if first is None:
        async with conn.transaction():
            yield
        return
    transaction = OneTripTransaction(conn)
    try:
        await transaction.start(first)
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the caller's error is the one to see; the pool resets a broken one
            await transaction.rollback()
        raise
    await transaction.commit()


class Runtime(Protocol):
    """The slice of a service runtime that handlers, actions and loops use."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> ServiceSettings: ...

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def keyring(self) -> KeyRing: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def audit(self) -> AuditTrail: ...

    @property
    def data_map(self) -> DataMap: ...

    def transaction(self, *, locking: Iterable[str | None] = ()) -> AbstractAsyncContextManager[Transaction]: ...


class PoolRuntime:
    """A `Runtime` on a pool alone (no Kafka): the service's parts driven in-process by tests and tools."""

    def __init__(self, name: str, settings: ServiceSettings, pool: asyncpg.Pool, data_map: DataMap | None = None):
        from privacy_runtime.datamap import load_data_map

        self.name = name
        self.settings = settings
        self.pool = pool
        self.keyring = KeyRing(settings.master_key(), settings.previous_master_key())
        self.outbox = Outbox(self.keyring, source=f"urn:isopartner:privacy:{name}")
        self.audit = AuditTrail(self.outbox, actor=f"service:{name}")
        self.data_map = data_map or load_data_map(settings.data_map_path)

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            await self.keyring.load_lookup_key(conn)

    def transaction(self, *, locking: Iterable[str | None] = ()) -> AbstractAsyncContextManager[Transaction]:
        return open_transaction(self.pool, self.keyring, self.outbox, self.audit, locking)
