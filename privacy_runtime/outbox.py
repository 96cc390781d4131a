"""Transactional outbox and its relay.

A handler writes its state change and the events that announce it in one transaction (`tx.outbox`,
which encodes with `Outbox.encode` and writes with `Outbox.write`, the table's one entry point).
The relay takes pending rows in id order, deleting them in a transaction that commits only once the
broker has them all; a crash before that commit re-publishes the same events (same CloudEvents `id`),
which every consumer ignores as duplicates. Deleting (not marking) keeps the table small and costs
PostgreSQL no new row version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.crypto import KeyRing, open_sealed
from privacy_runtime.crypto import seal as seal_bytes
from privacy_runtime.db import TRANSIENT_DB_ERRORS
from privacy_runtime.kafka import RenewingProducer
from schemas.envelope import new_event
from schemas.events import EventData

log = logging.getLogger(__name__)

#: Under a backlog the pending rows are counted (for `privacy_outbox_pending_messages`) at most this
#: often: a count after every full pass cost 2% of PostgreSQL's time in bench consent_ingest.
PENDING_COUNT_EVERY = 1.0


@dataclass(frozen=True)
class OutboxMessage:
    """One encoded event on its way out, as the outbox table holds it before sealing."""

    topic: str
    key: bytes | None
    value: bytes
    #: The subject whose data key seals the value (events that may carry PII, so erasure shreds them
    #: too); None for events that carry none (commands without fields, status, audit), which survive it.
    sealed_for: str | None = None


class Outbox:
    """Encodes outbound events and writes them inside the caller's transaction.

    `encode` is the one builder of an event from a contract model; `write` the one way into the table
    (the unit of work's `tx.outbox` binds it to its transaction). Hot paths that encode a checked
    shape themselves (commands) hand `write` their `OutboxMessage`s directly."""

    def __init__(self, keyring: KeyRing, source: str):
        self.keyring = keyring
        self.source = source
        self.wakeup = asyncio.Event()

    def encode(
        self,
        topic: str,
        data: EventData,
        *,
        subject: str | None,
        key: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
        seal: bool = True,
        extensions: Mapping[str, str] | None = None,
    ) -> tuple[str, OutboxMessage]:
        """The event's id and its message. The Kafka key is the subject unless `key` says otherwise."""
        event = new_event(topic, data, subject=subject, source=self.source, time=time, id=event_id,
                          extensions=extensions)
        kafka_key = key if key is not None else subject
        return str(event.id), OutboxMessage(
            topic, kafka_key.encode() if kafka_key else None, event.model_dump_json().encode(),
            subject if seal else None,
        )

    async def write(
        self, conn: asyncpg.Connection, messages: Sequence[OutboxMessage], pending: dict[str, bytes] | None = None
    ) -> None:
        """Queue messages in one round trip, sealing each that names a subject with that subject's key.

        Raises `SubjectErased` for a subject erased already: nothing of theirs may be written.
        `pending`: the data keys the caller's transaction created (see `TransactionKeys`)."""
        if not messages:
            return
        await conn.execute(queue_statement(1), *await self.columns(conn, messages, pending))

    async def columns(
        self, conn: asyncpg.Connection, messages: Sequence[OutboxMessage], pending: dict[str, bytes] | None = None
    ) -> list[list[Any]]:
        """The four arrays `queue_statement` takes (topic, key, subject, value), each value sealed as
        `write` says: for a caller that queues messages in a statement of its own."""
        if pending is None:
            pending = {}  # keys created here are not cached: nobody commits them
        subjects = {m.sealed_for for m in messages if m.sealed_for is not None}
        if len(subjects) > 1:  # many subjects' keys in two round trips rather than one or two each
            await self.keyring.ensure_keys(conn, subjects, pending)
        values: list[bytes] = []
        for message in messages:
            value = message.value
            if message.sealed_for is not None:
                data_key = await self.keyring.data_key(conn, message.sealed_for, pending=pending)
                assert data_key is not None
                value = seal_bytes(data_key, value, f"outbox:{message.sealed_for}".encode())
            values.append(value)
        return [[m.topic for m in messages], [m.key for m in messages], [m.sealed_for for m in messages], values]


def queue_statement(first: int, where: str = "") -> str:
    """The one INSERT into the outbox: the messages given as four arrays (`Outbox.columns`) from parameter
    `$first` on, queued in their order. `where`, a condition on `m` (the message) and `m.n` (its position
    from 1), lets a caller's data-modifying CTE decide which are queued, in the same round trip."""
    return (
        "INSERT INTO outbox (topic, key, subject, value) SELECT m.topic, m.key, m.subject, m.value "
        f"FROM unnest(${first}::text[], ${first + 1}::bytea[], ${first + 2}::text[], ${first + 3}::bytea[]) "
        f"WITH ORDINALITY AS m(topic, key, subject, value, n) {where} ORDER BY m.n"
    )


#: With the schema's hash: one relay pass at a time per schema, across processes.
_RELAY_LOCK_KEY = 0x0B0C5


class OutboxRelay:
    """Publishes pending outbox rows, in the order they were written.

    One pass at a time per schema, whichever process runs it (a transaction-scoped advisory lock; the
    others skip their turn): two relays publishing at once could reorder two commands of one subject,
    a suppress and a later unsuppress, on their way to the system."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: RenewingProducer,
        outbox: Outbox,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        before_publish: Sequence[Callable[[], Awaitable[None]]] = (),
    ):
        self.pool = pool
        #: Awaited after rows are taken and before any is handed to the producer (e.g. a cache that
        #: must have seen every change committed before the events that announce it leave).
        self.before_publish = before_publish
        self.producer = producer
        self.outbox = outbox
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._stopping = False
        self._pending_counted_at = float("-inf")
        self._other_relay_busy = False

    def stop(self) -> None:
        self._stopping = True
        self.outbox.wakeup.set()

    async def run(self) -> None:
        delay = 0.2
        while not self._stopping:
            # Cleared before the pass, not after: a commit during the pass wakes the next one at once.
            self.outbox.wakeup.clear()
            try:
                published = await self.publish_pending()
                delay = 0.2
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("outbox relay waiting for the database: %s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._other_relay_busy:
                # Another process holds this schema's relay: look again in a while, not at every local
                # commit (each look is a transaction; that relay publishes our rows meanwhile).
                await asyncio.sleep(self.poll_seconds)
            elif published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outbox.wakeup.wait(), timeout=self.poll_seconds)

    async def publish_pending(self) -> int:
        # Taken and deleted in one statement, published, then committed: a failed publish rolls the
        # delete back, and a crash before the commit leaves the rows to be published again.
        async with self.pool.acquire() as conn, conn.transaction():
            # The relay's lock and the take in one round trip (a withdrawal's command waits for both):
            # rows are taken only when the lock was; one row with a NULL id says "nothing (to) take".
            taken = await conn.fetch(
                "WITH relay AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($2::int, hashtext(current_schema())) "
                "AS locked), taken AS (DELETE FROM outbox WHERE (SELECT locked FROM relay) AND id IN "
                "(SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) "
                "RETURNING id, topic, key, subject, value, headers) "
                "SELECT relay.locked, taken.* FROM relay LEFT JOIN taken ON true",
                self.batch_size, _RELAY_LOCK_KEY,
            )
            self._other_relay_busy = not taken[0]["locked"]
            if self._other_relay_busy:
                return 0  # another process is relaying this schema's outbox now
            rows = sorted((row for row in taken if row["id"] is not None), key=lambda row: row["id"])
            if not rows:
                metrics.OUTBOX_PENDING.set(0)
                return 0
            for hook in self.before_publish:
                await hook()
            futures = []
            undeliverable: list[int] = []
            published: Counter[str] = Counter()
            for row in rows:
                value = await self._plaintext(conn, row)
                if value is None:
                    undeliverable.append(row["id"])
                    continue
                headers = [(k, v.encode()) for k, v in json.loads(row["headers"])]
                futures.append(
                    await self.producer.send(row["topic"], value=value, key=row["key"], headers=headers or None)
                )
                published[row["topic"]] += 1
            await asyncio.gather(*futures)
            for topic, count in published.items():
                metrics.OUTBOX_PUBLISHED.labels(topic=topic).inc(count)
            if undeliverable:
                # The subject was erased before the event left: nothing of theirs may be published now.
                log.info("outbox dropped %d events of erased subjects", len(undeliverable))
                metrics.OUTBOX_DROPPED_ERASED.inc(len(undeliverable))
            if len(rows) < self.batch_size:
                metrics.OUTBOX_PENDING.set(0)
            elif time.monotonic() - self._pending_counted_at >= PENDING_COUNT_EVERY:
                self._pending_counted_at = time.monotonic()
                # This pass's rows are deleted already (in this transaction): the rest is pending.
                metrics.OUTBOX_PENDING.set(
                    await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            return len(rows)

    async def _plaintext(self, conn: asyncpg.Connection, row: Any) -> bytes | None:
        if row["subject"] is None:
            return bytes(row["value"])
        data_key = await self.outbox.keyring.data_key(conn, row["subject"], create=False)
        if data_key is None:
            return None
        return open_sealed(data_key, bytes(row["value"]), f"outbox:{row['subject']}".encode())


async def close_publishing(
    relay: OutboxRelay | None, producer: RenewingProducer | None, *pools: asyncpg.Pool | None
) -> None:
    """The end of every runtime: drain what is already committed (it leaves now rather than at the
    next start), then stop the producer and close the pools."""
    if relay is not None:
        try:
            await asyncio.wait_for(relay.publish_pending(), timeout=5)
        except Exception as exc:
            log.warning("outbox drain at shutdown incomplete: %s", exc)
    if producer is not None:
        await producer.stop()
    for pool in pools:
        if pool is not None:
            await pool.close()
