"""The consumer loop: topic partitions in, batches through `StreamProcessor`, offsets committed after.

Why not one faust agent per topic: faust hands events over one at a time (about 10k events/s per
process on this kind of machine, measured), and the ledger needs whole batches to reach the database
in a few round trips. One aiokafka consumer per service polls up to `batch_max_events` messages at
once, applies them per topic in one transaction each, and commits the offsets only after that commit.
A crash anywhere re-delivers the batch; the idempotency claims make the replay a no-op. faust still
runs the service (web, timers, lifecycle); this is the one place where it does not fit.

Two stages overlap: while batch N's transaction waits on PostgreSQL, batch N+1 is fetched and decoded
(bad messages dead-lettered). Batches are still applied and committed strictly in order, one at a
time; before a rebalance takes partitions away, the batch in flight is finished and committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from privacy_runtime import metrics
from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.processor import Inbound, RawMessage, StreamProcessor

log = logging.getLogger(__name__)


def _raw(record: ConsumerRecord[bytes, bytes]) -> RawMessage:
    return RawMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=[(str(k), bytes(v) if v is not None else b"") for k, v in (record.headers or ())],
    )


Polled = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class _InFlight:
    """A batch being applied, and the offsets to commit once it is."""

    def __init__(self, task: asyncio.Task[None], offsets: dict[TopicPartition, OffsetAndMetadata]):
        self.task = task
        self.offsets = offsets


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner.finish_in_flight()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class BatchConsumer:
    def __init__(self, runtime: Any, group_id: str, processors: dict[str, StreamProcessor]):
        self.runtime = runtime
        self.group_id = group_id
        self.processors = processors
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight: _InFlight | None = None

    def stop(self) -> None:
        """Finish the batch in hand, commit it, then leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.runtime.settings
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_events,
            fetch_max_wait_ms=20,
            # A member killed without leaving is noticed after this long (the default is 45 s).
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            **aiokafka_options(settings),
        )
        consumer.subscribe(list(self.processors), listener=_FinishBeforeRevoke(self))
        self._consumer = consumer
        await self._start(consumer)
        try:
            while not self._stopping.is_set():
                # getmany returns as soon as records arrive; the timeout only bounds an idle wait.
                polled = await consumer.getmany(timeout_ms=250, max_records=settings.batch_max_events)
                decoded = await self._decode(polled) if polled else None
                await self.finish_in_flight()
                if decoded is not None:
                    offsets = {tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in polled.items()}
                    self._in_flight = _InFlight(asyncio.create_task(self._apply(decoded)), offsets)
            await self.finish_in_flight()
        finally:
            in_flight, self._in_flight = self._in_flight, None
            if in_flight is not None and not in_flight.task.done():
                in_flight.task.cancel()  # not committed: the batch comes again after a restart
            await consumer.stop()

    async def finish_in_flight(self) -> None:
        """Wait for the batch being applied and commit its offsets (also called before a rebalance)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None or self._consumer is None:
            return
        await in_flight.task  # an error propagates: the loop restarts and the batch is re-delivered
        try:
            await self._consumer.commit(in_flight.offsets)
        except CommitFailedError as exc:
            # The group moved on without us; the next owner re-delivers the batch and the claims
            # make it a no-op.
            log.warning("offsets of an applied batch not committed (%s); it will be re-delivered", exc)

    async def report_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except Exception:  # partition revoked meanwhile
                continue
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, highwater - position))

    async def _decode(self, polled: Polled) -> dict[str, list[Inbound]]:
        by_topic: dict[str, list[RawMessage]] = defaultdict(list)
        for tp, records in polled.items():
            by_topic[tp.topic].extend(_raw(r) for r in records)
        return {topic: await self.processors[topic].decode(messages) for topic, messages in by_topic.items()}

    async def _apply(self, decoded: dict[str, list[Inbound]]) -> None:
        """Topic after topic; a topic's partitions at once, each in its own transaction.

        Order matters only within a partition (events are keyed by subject), so partitions need not
        wait for each other: while PostgreSQL runs one partition's statements, the next is prepared.
        A deadlock between them is retried like any transient database error."""
        for topic, good in decoded.items():
            by_partition: dict[int, list[Inbound]] = defaultdict(list)
            for item in good:
                by_partition[item.raw.partition].append(item)
            processor = self.processors[topic]
            results = await asyncio.gather(
                *(processor.apply(items) for items in by_partition.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        delay = 0.2
        while True:
            try:
                await consumer.start()
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                log.warning("Kafka consumer cannot start yet (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
