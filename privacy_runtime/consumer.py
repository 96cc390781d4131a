"""The consumer loop: topic partitions in, batches through `StreamProcessor`, offsets committed after.

Why not one faust agent per topic: faust hands events over one at a time (about 10k events/s per
process on this kind of machine, measured), and the ledger needs whole batches to reach the database
in a few round trips. One aiokafka consumer per service polls up to `batch_max_events` messages at
once, applies them per topic in one transaction each, and commits the offsets only after that commit.
A crash anywhere re-delivers the batch; the idempotency claims make the replay a no-op. faust still
runs the service (web, timers, lifecycle); this is the one place where it does not fit.

Under a backlog two stages overlap: while batch N's transactions wait on PostgreSQL, batch N+1 is
fetched and decoded (bad messages dead-lettered). Batches are still applied and committed strictly in
order, one at a time; before a rebalance takes partitions away, the batch in flight is finished and
committed. A trickle of events is applied at once, one batch at a time (lower latency).
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
#: From this many messages in one poll on (a backlog), the next poll is fetched and decoded while this
#: one is applied, and a topic's events go in one transaction per partition side by side. Below (a
#: trickle), one batch at a time in one transaction is faster: measured with bench change_latency.
OVERLAP_FROM = 200


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
        #: The batch being applied and committed, while the next one is fetched and decoded.
        self._in_flight: asyncio.Task[None] | None = None

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
                    if sum(len(records) for records in polled.values()) < OVERLAP_FROM:
                        await self._apply_and_commit(decoded, offsets)  # a trickle: latency first
                    else:
                        self._in_flight = asyncio.create_task(self._apply_and_commit(decoded, offsets))
            await self.finish_in_flight()
        finally:
            in_flight, self._in_flight = self._in_flight, None
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()  # not committed: the batch comes again after a restart
            await consumer.stop()

    async def finish_in_flight(self) -> None:
        """Wait until the batch being applied is committed, offsets too (also called before a rebalance)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight  # an error propagates: the loop restarts and the batch is re-delivered

    async def _apply_and_commit(
        self, decoded: dict[str, list[Inbound]], offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        await self._apply(decoded)
        assert self._consumer is not None
        try:
            # Right away, not when the next batch arrives: that one should not wait for this round trip.
            await self._consumer.commit(offsets)
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
            processor = self.processors[topic]
            if len(good) < OVERLAP_FROM:
                await processor.apply(good)  # few events: one transaction costs fewer round trips
                continue
            by_partition: dict[int, list[Inbound]] = defaultdict(list)
            for item in good:
                by_partition[item.raw.partition].append(item)
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
