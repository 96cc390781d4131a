"""Batch processing of one inbound topic: decode, dead-letter, deduplicate, apply, commit.

A batch of messages is applied in one database transaction together with the idempotency claims of
its event ids and the outbox rows it produces. Only after that commit are the Kafka offsets acked, so
a crash at any point re-delivers the batch and the claims make the replay a no-op.

- A message that cannot be decoded goes to `<topic>.dlq` (see `deadletters`).
- A dependency that is down (database) stalls the batch with backoff; nothing is dead-lettered for it.
- A handler error on good input re-runs the batch one event at a time, and the event that fails is
  dead-lettered with the error, so one poison event never blocks its partition.

Events about one subject are applied one transaction at a time, whichever topic or partition they
came on (`subject_locks`, taken with the transaction's BEGIN): lanes run partitions concurrently, and
without the lock a registration and a withdrawal of one subject, or an erasure and a late event, could
each decide on what the other had not committed yet.

Deduplication is by a `processed_events` claim per event id, unless the stream's own rows already have
a unique key derived from the event id (the consent ledger's entry ids): such a handler is registered
with `deduplicate=False`, drops re-delivered events itself and returns how many were new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.codec import DecodeError, decode
from privacy_runtime.db import TRANSIENT_DB_ERRORS
from privacy_runtime.deadletters import DeadLetters
from privacy_runtime.ordering import ordering_time
from privacy_runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    #: When this service received it (polled it): the event's arrival, by this service's clock, which
    #: the producer cannot set (the record's Kafka timestamp is the producer's, by default).
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Inbound:
    """A decoded event with where it came from."""

    event: Any  # schemas CloudEvent of the topic's model
    raw: RawMessage

    @property
    def data(self) -> Any:
        return self.event.data

    @property
    def ordered_at(self) -> datetime:
        """The event's time for ordering state (`ordering.ordering_time`: capped at its arrival)."""
        return ordering_time(self.event.time, self.raw.received_at)


#: Gets the batch's unit of work; returns None, or (a handler that deduplicates itself) how many of the
#: events were new.
Handler = Callable[[UnitOfWork, list[Inbound]], Awaitable[int | None]]


class StreamRuntime(Protocol):
    """What a StreamProcessor needs of its service: units of work, and where undecodable messages go."""

    @property
    def dead_letters(self) -> DeadLetters: ...

    def transaction(self, *, locking: Iterable[str | None] = ()) -> AbstractAsyncContextManager[UnitOfWork]: ...


async def claim(conn: asyncpg.Connection, topic: str, event_ids: Iterable[str]) -> set[str]:
    """The event ids not processed before, now claimed in the caller's transaction."""
    claimed = await conn.fetch(
        "INSERT INTO processed_events (event_id, topic) SELECT unnest($1::text[]), $2 "
        "ON CONFLICT DO NOTHING RETURNING event_id",
        list(event_ids),
        topic,
    )
    return {r["event_id"] for r in claimed}


class StreamProcessor:
    def __init__(self, runtime: StreamRuntime, topic: str, handler: Handler, *, deduplicate: bool = True):
        self.runtime = runtime
        self.topic = topic
        self.handler = handler
        self.deduplicate = deduplicate

    async def process(self, messages: Sequence[RawMessage]) -> None:
        await self.apply(await self.decode(messages))

    async def decode(self, messages: Sequence[RawMessage]) -> list[Inbound]:
        """The messages that decode; the others are dead-lettered."""
        metrics.EVENTS_CONSUMED.labels(topic=self.topic).inc(len(messages))
        good: list[Inbound] = []
        for number, raw in enumerate(messages, 1):
            if number % 100 == 0:
                await asyncio.sleep(0)  # let the batch in flight send its next statement meanwhile
            try:
                good.append(Inbound(decode(raw.topic, raw.key, raw.value), raw))
            except DecodeError as exc:
                await self.runtime.dead_letters.send(
                    topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
                    value=raw.value, headers=raw.headers, error=exc.message, reason=exc.reason,
                )
        return good

    async def apply(self, good: list[Inbound]) -> None:
        """Apply decoded events in one transaction (one at a time if the batch fails)."""
        if not good:
            return
        started = time.perf_counter()
        try:
            await self._with_retry(lambda: self._apply(good))
        except Exception as exc:  # a handler error: isolate the event that causes it
            log.warning("batch of %d on %s failed (%s); applying one by one", len(good), self.topic, exc)
            for item in good:
                try:
                    await self._with_retry(lambda item=item: self._apply([item]))  # type: ignore[misc]
                except Exception as item_exc:
                    raw = item.raw
                    await self.runtime.dead_letters.send(
                        topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key,
                        value=raw.value, headers=raw.headers,
                        error=f"processing failed: {type(item_exc).__name__}: {item_exc}",
                        reason="processing_error",
                    )
        metrics.EVENT_PROCESSING_SECONDS.labels(topic=self.topic).observe(time.perf_counter() - started)

    async def _with_retry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await attempt()
                return
            except TRANSIENT_DB_ERRORS as exc:
                metrics.PROCESSING_RETRIES.labels(topic=self.topic).inc()
                log.warning("%s: dependency unavailable (%s); retrying in %.1fs", self.topic,
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply(self, batch: list[Inbound]) -> None:
        first: dict[str, Inbound] = {}
        for item in batch:  # the same event twice in one batch (a producer retry) counts once
            first.setdefault(item.event.id, item)
        async with self.runtime.transaction(locking=(item.event.subject for item in first.values())) as tx:
            if self.deduplicate:
                ids = await claim(tx.conn, self.topic, first)
                fresh = [item for event_id, item in first.items() if event_id in ids]
            else:
                fresh = list(first.values())
            new = await self.handler(tx, fresh) if fresh else 0
        processed = len(fresh) if new is None else new
        now = datetime.now(UTC)
        metrics.EVENTS_PROCESSED.labels(topic=self.topic).inc(processed)
        metrics.EVENTS_DUPLICATE.labels(topic=self.topic).inc(len(batch) - processed)
        delays = metrics.EVENT_DELAY_SECONDS.labels(topic=self.topic)
        for item in fresh:
            delays.observe(max(0.0, (now - item.event.time).total_seconds()))
