"""Transactional outbox and its relay.

A handler writes its state change and the events that announce it in one transaction (`Outbox.add`).
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
from collections.abc import Awaitable, Callable, Sequence
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


class Outbox:
    """Writes outbound events inside the caller's transaction."""

    def __init__(self, keyring: KeyRing, source: str):
        self.keyring = keyring
        self.source = source
        self.wakeup = asyncio.Event()

    async def add(
        self,
        conn: asyncpg.Connection,
        topic: str,
        data: EventData,
        *,
        subject: str | None,
        key: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
        seal: bool = True,
        pending: dict[str, bytes] | None = None,
    ) -> str:
        """Queue one CloudEvent; returns its id.

        Events that may carry PII are sealed with the subject's key, so erasure shreds them too; events
        that carry none (acks without export, status, audit) pass `seal=False` and survive erasure.
        """
        event = new_event(topic, data, subject=subject, source=self.source, time=time, id=event_id)
        value = event.model_dump_json(exclude_none=False).encode()
        kafka_key = (key if key is not None else subject or "").encode() or None
        sealed_for = subject if (seal and subject is not None) else None
        if sealed_for is not None:
            data_key = await self.keyring.data_key(conn, sealed_for, pending=pending)
            assert data_key is not None
            value = seal_bytes(data_key, value, f"outbox:{sealed_for}".encode())
        await conn.execute(
            "INSERT INTO outbox (topic, key, subject, value) VALUES ($1, $2, $3, $4)",
            topic,
            kafka_key,
            sealed_for,
            value,
        )
        return str(event.id)

    async def add_many(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[tuple[str, EventData, str | None]],
        *,
        keys: list[str] | None = None,
        seal: bool = True,
        extensions: list[dict[str, str]] | None = None,
        pending: dict[str, bytes] | None = None,
    ) -> list[str]:
        """Queue many (topic, data, subject) events in one round trip; returns their ids.

        Kafka keys are the subjects unless `keys` says otherwise. `seal=False` is for events that
        carry no PII (e.g. suppress commands, audit entries), which then need no data key at all.
        `extensions`: CloudEvents extension attributes per event."""
        if not rows:
            return []
        if seal:
            if any(subject is None for _, _, subject in rows):
                raise ValueError("only events with a subject can be sealed")
            if pending is None:
                pending = {}  # keys created here are not cached: nobody commits them
            await self.keyring.ensure_keys(conn, {subject for _, _, subject in rows if subject is not None}, pending)
        topics: list[str] = []
        kafka_keys: list[bytes | None] = []
        subjects: list[str | None] = []
        values: list[bytes] = []
        ids: list[str] = []
        for number, (topic, data, subject) in enumerate(rows):
            event = new_event(topic, data, subject=subject, source=self.source,
                              extensions=extensions[number] if extensions is not None else None)
            value = event.model_dump_json().encode()
            if seal and subject is not None:
                data_key = await self.keyring.data_key(conn, subject, pending=pending)
                assert data_key is not None
                value = seal_bytes(data_key, value, f"outbox:{subject}".encode())
            key = keys[number] if keys is not None else subject
            topics.append(topic)
            kafka_keys.append(key.encode() if key else None)
            subjects.append(subject if seal else None)
            values.append(value)
            ids.append(str(event.id))
        await _insert(conn, topics, kafka_keys, subjects, values)
        return ids

    async def add_encoded(self, conn: asyncpg.Connection, rows: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Queue events encoded already (topic, Kafka key, value), e.g. by `dump_checked_event`. Only
        for events that carry no PII: they are not sealed."""
        if rows:
            topics, keys, values = (list(column) for column in zip(*rows, strict=True))
            await _insert(conn, topics, keys, [None] * len(rows), values)


async def _insert(
    conn: asyncpg.Connection, topics: list[str], keys: list[bytes | None], subjects: list[str | None],
    values: list[bytes],
) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, key, subject, value) "
        "SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[])",
        topics, keys, subjects, values,
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
