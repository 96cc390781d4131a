"""The batch consumer's lanes against a real broker: a partition's batches are applied in order and
exactly once, partitions side by side; a batch that fails stops its lane there, and what was not
committed comes again after a restart."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.stack import Stack
from privacy_runtime.consumer import OVERLAP_FROM, BatchConsumer
from privacy_runtime.processor import Inbound, RawMessage
from privacy_runtime.settings import ConnectionSettings
from tests.helpers import wait_until

pytestmark = pytest.mark.stack

PARTITIONS = 4
PER_PARTITION = 1500


#: A partition spans many polls: consecutive polls share lanes.
BATCH_MAX_EVENTS = 300


@dataclass
class RecordingProcessor:
    """Records which offsets were applied, in which order, and how many batches ran at once."""

    fail_at: tuple[int, int] | None = None  # (partition, offset): the batch holding it raises, once
    applied: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    open_now: int = 0
    most_open: int = 0

    async def decode(self, messages: Sequence[RawMessage]) -> list[Inbound]:
        return [Inbound(event=None, raw=m) for m in messages]

    async def apply(self, items: list[Inbound]) -> None:
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await asyncio.sleep(random.uniform(0.001, 0.01))  # a transaction's round trips
            offsets = [(i.raw.partition, i.raw.offset) for i in items]
            if self.fail_at is not None and self.fail_at in offsets:
                self.fail_at = None
                raise RuntimeError("the dead-letter topic is unreachable")
            for partition, offset in offsets:
                self.applied[partition].append(offset)
        finally:
            self.open_now -= 1


async def _topic_with_backlog(bootstrap: str) -> str:
    topic = f"lanes-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            for n in range(PER_PARTITION):
                await producer.send(topic, value=b"%d" % n, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    return topic


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def _run_until(consumer: BatchConsumer, done: Any, timeout: float = 60.0) -> None:
    """Run the consumer until `done()` (a coroutine function) says so, then stop it gracefully."""
    task = asyncio.create_task(consumer.run())

    async def finished() -> bool:
        if task.done():
            raise AssertionError(f"the consumer stopped: {task.exception()!r}")
        return bool(await done())

    try:
        await wait_until(finished, timeout=timeout, interval=0.05, what="the backlog to be applied")
        consumer.stop()
        await asyncio.wait_for(task, timeout=30)
    finally:
        if not task.done():
            task.cancel()


async def test_a_backlog_is_applied_in_order_per_partition_lanes_side_by_side(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    topic = await _topic_with_backlog(bootstrap)
    group = f"lanes-{uuid.uuid4().hex[:8]}"
    processor = RecordingProcessor()
    settings = ConnectionSettings(kafka_bootstrap_servers=bootstrap)
    consumer = BatchConsumer(settings, group, {topic: processor}, batch_max_events=BATCH_MAX_EVENTS)  # type: ignore[dict-item]

    async def all_applied() -> bool:
        return sum(map(len, processor.applied.values())) >= PARTITIONS * PER_PARTITION

    await _run_until(consumer, all_applied)

    for partition in range(PARTITIONS):
        assert processor.applied[partition] == list(range(PER_PARTITION)), f"partition {partition} out of order"
    assert processor.most_open > 1, "partitions should be applied side by side"
    assert await _committed(bootstrap, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}
    assert OVERLAP_FROM < PARTITIONS * PER_PARTITION  # the backlog went through the lanes


async def test_a_failed_batch_stops_its_lane_and_comes_again_after_a_restart(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    topic = await _topic_with_backlog(bootstrap)
    group = f"lanes-{uuid.uuid4().hex[:8]}"
    failing = (2, PER_PARTITION // 2)
    processor = RecordingProcessor(fail_at=failing)
    settings = ConnectionSettings(kafka_bootstrap_servers=bootstrap)

    first = BatchConsumer(settings, group, {topic: processor}, batch_max_events=BATCH_MAX_EVENTS)  # type: ignore[dict-item]
    with pytest.raises(RuntimeError, match="unreachable"):
        await asyncio.wait_for(first.run(), timeout=60)
    before_restart = list(processor.applied[failing[0]])
    assert before_restart == list(range(len(before_restart))), "applied in order up to the failure"
    assert len(before_restart) <= failing[1], "nothing applied past the failed batch in its lane"
    committed = await _committed(bootstrap, group, topic)
    assert committed.get(failing[0], 0) <= len(before_restart), "no offset committed past what was applied"

    # Offsets applied but not committed before the failure come again too (the committer runs a few
    # times a second): run until the group has committed every partition to its end.
    async def all_committed() -> bool:
        return await _committed(bootstrap, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}

    second = BatchConsumer(settings, group, {topic: processor}, batch_max_events=BATCH_MAX_EVENTS)  # type: ignore[dict-item]
    await _run_until(second, all_committed)
    assert all(set(processor.applied[p]) >= set(range(PER_PARTITION)) for p in range(PARTITIONS))

    # Re-delivered from the committed offset: at least once, still in order within each delivery.
    redelivered = processor.applied[failing[0]][len(before_restart):]
    assert redelivered == list(range(committed.get(failing[0], 0), PER_PARTITION))
    assert await _committed(bootstrap, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}
