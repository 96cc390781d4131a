"""The consumer loop: topic partitions in, batches through `StreamProcessor`, offsets committed after.

Why not one faust agent per topic: faust hands events over one at a time (about 10k events/s per
process on this kind of machine, measured), and the ledger needs whole batches to reach the database
in a few round trips. One aiokafka consumer per service polls up to `batch_max_events` messages at
once, applies them per topic in one transaction each, and commits the offsets only after that commit.
A crash anywhere re-delivers the batch; the idempotency claims make the replay a no-op. faust still
runs the service (web, timers, lifecycle); this is the one place where it does not fit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from privacy_runtime import metrics
from privacy_runtime.kafka import aiokafka_options
from privacy_runtime.processor import RawMessage, StreamProcessor

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


class BatchConsumer:
    def __init__(self, runtime: Any, group_id: str, processors: dict[str, StreamProcessor]):
        self.runtime = runtime
        self.group_id = group_id
        self.processors = processors
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        """Finish the batch in hand, commit it, then leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.runtime.settings
        consumer = AIOKafkaConsumer(
            *self.processors,
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
        self._consumer = consumer
        await self._start(consumer)
        try:
            while not self._stopping.is_set():
                # getmany returns as soon as records arrive; the timeout only bounds an idle wait.
                polled = await consumer.getmany(timeout_ms=250, max_records=settings.batch_max_events)
                if not polled:
                    continue
                await self._process(polled)
                await consumer.commit(
                    {tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in polled.items()}
                )
        finally:
            await consumer.stop()

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

    async def _process(self, polled: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        by_topic: dict[str, list[RawMessage]] = defaultdict(list)
        for tp, records in polled.items():
            by_topic[tp.topic].extend(_raw(r) for r in records)
        for topic, messages in by_topic.items():
            await self.processors[topic].process(messages)

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
