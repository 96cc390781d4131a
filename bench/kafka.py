"""Kafka plumbing for the workloads: bulk produce, raw consume, topic and consumer-group resets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError

from schemas.envelope import parse_event
from tests.helpers import commit_group_offsets

Record = tuple[bytes, bytes]  # (key, value)


def producer(bootstrap: str, **options: object) -> AIOKafkaProducer:
    settings: dict[str, object] = {"acks": "all", "linger_ms": 5, "max_batch_size": 512 * 1024}
    settings.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)  # type: ignore[arg-type]


async def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Send every record (acks=all) as fast as the client goes; returns messages/s."""
    client = producer(bootstrap)
    await client.start()
    try:
        began = time.perf_counter()
        for start in range(0, len(records), 20_000):
            futures = [await client.send(topic, key=key, value=value)
                       for key, value in records[start:start + 20_000]]
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - began
    finally:
        await client.stop()
    return len(records) / elapsed if elapsed > 0 else 0.0


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(found)]
    finally:
        await consumer.stop()


async def raw_consume(bootstrap: str, topic: str, count: int, *, parse: bool, timeout: float = 120.0) -> float:
    """The client limit: getmany from the beginning (+ `parse_event` of each value); messages/s.

    Timed from the first fetch (partitions assigned, positions known) to the `count`-th message.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await partitions(bootstrap, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        deadline = time.monotonic() + timeout
        began = time.perf_counter()
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consume of {topic}: {seen}/{count} after {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batches.values():
                if parse:
                    for message in messages:
                        parse_event(message.value, topic)
                seen += len(messages)
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = await partitions(bootstrap, topic)
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages of `topic` the group has not committed yet; None when it has committed nothing there."""
    ends = await end_offsets(bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    finally:
        await admin.close()
    if not any(meta is not None and meta.offset >= 0 for meta in committed.values()):
        return None
    lag = 0
    for tp, end in ends.items():
        meta = committed.get(tp)
        lag += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
    return lag


async def recreate_topic(bootstrap: str, topic: str, partition_count: int, timeout: float = 60.0) -> None:
    """Delete `topic` and create it again, empty, with `partition_count` partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            await admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while True:  # the broker refuses the create while the delete is still in progress
            with contextlib.suppress(Exception):
                if topic not in await admin.list_topics():
                    response = await admin.create_topics([NewTopic(topic, partition_count, 1)])
                    if all(entry[1] == 0 for entry in response.topic_errors):
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not recreate {topic}")
            await asyncio.sleep(0.3)
        while len(await partitions(bootstrap, topic)) != partition_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} has no metadata after re-creation")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def reset_group(bootstrap: str, group: str, topic: str, timeout: float = 60.0, *,
                      to_end: bool = False) -> None:
    """Commit offset 0 (or the end, `to_end`) on every partition of `topic` for `group` (it must have no
    live members)."""
    await commit_group_offsets(bootstrap, group, [topic], to_end=to_end, timeout=timeout)


async def create_scratch_topic(bootstrap: str, topic: str, partition_count: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, partition_count, 1)])
    finally:
        await admin.close()
    deadline = time.monotonic() + 30
    while not await partitions(bootstrap, topic):
        if time.monotonic() > deadline:
            raise TimeoutError(f"scratch topic {topic} has no metadata")
        await asyncio.sleep(0.2)


async def wait_caught_up(bootstrap: str, groups: Sequence[str], topic: str, *, timeout: float = 180.0,
                         unknown_after: float = 10.0) -> None:
    """Wait until every group has committed all of `topic`; a group that commits nothing there for
    `unknown_after` seconds is taken not to read it."""
    began = time.monotonic()
    while True:
        waited = time.monotonic() - began
        try:
            lags = [await group_lag(bootstrap, group, topic) for group in groups]
        except GroupCoordinatorNotAvailableError:
            # The broker is still creating its offsets topic (slow on a loaded machine): not yet.
            if waited > timeout:
                raise
            await asyncio.sleep(0.5)
            continue
        if all(lag == 0 or (lag is None and waited > unknown_after) for lag in lags):
            return
        if waited > timeout:
            raise TimeoutError(f"consumer groups {list(groups)} still lag on {topic}: {lags}")
        await asyncio.sleep(0.5)


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group, e.g. ("Stable", 2)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.describe_consumer_groups([group])
        described = response[0].to_object()["groups"][0]
        return str(described["state"]), len(described["members"])
    finally:
        await admin.close()
