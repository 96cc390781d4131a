"""Dead letters, read from the `<topic>.dlq` topics: where and why, never the payload (it may hold
personal data), and a replay that publishes the original message to its topic again.

A replayed event keeps its CloudEvents id, so a consumer that handled it meanwhile ignores it; one
that refused it for a reason since fixed (a schema, a bug) now takes it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from privacy_runtime.kafka import RenewingProducer
from schemas.topics import (
    DLQ_HEADER_DEAD_LETTERED_BY,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_ORIGINAL_OFFSET,
    DLQ_HEADER_ORIGINAL_PARTITION,
    DLQ_HEADER_ORIGINAL_TOPIC,
    DLQ_HEADERS,
    DLQ_TOPICS,
)

ERROR_CHARS = 300
REPLAY_HEADER = "x-replayed-from"


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the .dlq topic
    partition: int
    offset: int
    time: datetime
    key: str | None
    error: str
    original_topic: str
    original_partition: str
    original_offset: str
    dead_lettered_by: str


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str:
    for key, value in reversed(list(headers or ())):
        if key == name:
            return value.decode("utf-8", "replace")
    return ""


def describe(topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None,
             headers: Sequence[tuple[str, bytes]]) -> DeadLetter:
    """What the office shows of a dead letter: its place, time, key (a subject id, opaque) and error."""
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        time=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        key=key.decode("utf-8", "replace")[:200] if key is not None else None,
        error=_header(headers, DLQ_HEADER_ERROR)[:ERROR_CHARS],
        original_topic=_header(headers, DLQ_HEADER_ORIGINAL_TOPIC) or topic.removesuffix(".dlq"),
        original_partition=_header(headers, DLQ_HEADER_ORIGINAL_PARTITION),
        original_offset=_header(headers, DLQ_HEADER_ORIGINAL_OFFSET),
        dead_lettered_by=_header(headers, DLQ_HEADER_DEAD_LETTERED_BY),
    )


def replay_headers(headers: Sequence[tuple[str, bytes]], topic: str, partition: int, offset: int
                   ) -> list[tuple[str, bytes]]:
    """The original headers (without the dead-letter ones), plus where the replay came from."""
    dropped = {*DLQ_HEADERS, DLQ_HEADER_DEAD_LETTERED_BY, REPLAY_HEADER}
    kept = [(k, v) for k, v in headers or () if k not in dropped]
    return [*kept, (REPLAY_HEADER, f"{topic}:{partition}:{offset}".encode())]


class NotFound(LookupError):
    """Nothing to replay there: `key` names the office's text that says why (`dead.missing.*` in
    `texts`), `values` fill it in."""

    def __init__(self, key: str, message: str, **values: object):
        super().__init__(message)
        self.key = f"dead.missing.{key}"
        self.values = values


class DeadLetterReader:
    """Reads the newest dead letters of every `.dlq` topic and replays one. One reader at a time (a
    consumer with no group, assigned and positioned per read)."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: RenewingProducer, topics: Sequence[str] = DLQ_TOPICS):
        self.consumer = consumer
        self.producer = producer
        self.topics = tuple(topics)
        self._lock = asyncio.Lock()

    async def _partitions(self) -> list[TopicPartition]:
        # Fresh metadata of every topic each time (one request): assigning partitions narrows what the
        # client tracks, so its cached metadata may lack the other .dlq topics.
        metadata = await self.consumer._client.fetch_all_metadata()
        return [TopicPartition(topic, partition) for topic in self.topics
                for partition in sorted(metadata.partitions_for_topic(topic) or ())]

    async def counts(self) -> dict[str, int]:
        """Messages held per .dlq topic (end minus beginning offsets)."""
        async with self._lock:
            parts = await self._partitions()
            if not parts:
                return {}
            ends = await self.consumer.end_offsets(parts)
            starts = await self.consumer.beginning_offsets(parts)
        totals: dict[str, int] = dict.fromkeys(self.topics, 0)
        for tp in parts:
            totals[tp.topic] += ends[tp] - starts[tp]
        return totals

    async def newest(self, per_topic: int, timeout: float = 10.0) -> dict[str, list[DeadLetter]]:
        """The newest `per_topic` dead letters of each .dlq topic, newest first."""
        async with self._lock:
            parts = await self._partitions()
            result: dict[str, list[DeadLetter]] = {t: [] for t in self.topics}
            if not parts:
                return result
            ends = await self.consumer.end_offsets(parts)
            starts = await self.consumer.beginning_offsets(parts)
            wanted = {tp: ends[tp] for tp in parts if ends[tp] > starts[tp]}
            if not wanted:
                return result
            self.consumer.assign(list(wanted))
            for tp, end in wanted.items():
                self.consumer.seek(tp, max(starts[tp], end - per_topic))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            pending = dict(wanted)
            while pending and loop.time() < deadline:
                batch = await self.consumer.getmany(*pending, timeout_ms=500)
                for tp, records in batch.items():
                    for r in records:
                        result[tp.topic].append(describe(tp.topic, tp.partition, r.offset, r.timestamp, r.key,
                                                         list(r.headers or ())))
                        if r.offset + 1 >= pending.get(tp, 0):
                            pending.pop(tp, None)
            self.consumer.assign([])
        return {t: sorted(v, key=lambda d: (d.time, d.offset), reverse=True)[:per_topic] for t, v in result.items()}

    async def replay(self, topic: str, partition: int, offset: int, timeout: float = 10.0) -> DeadLetter:
        """Publish the dead letter at (topic, partition, offset) to its original topic again."""
        if topic not in self.topics:
            raise NotFound("topic", f"{topic} is not a dead-letter topic", topic=topic[:120])
        tp = TopicPartition(topic, partition)
        async with self._lock:
            if tp not in await self._partitions():
                raise NotFound("partition", f"{topic} has no partition {partition}", topic=topic, partition=partition)
            self.consumer.assign([tp])
            self.consumer.seek(tp, offset)
            try:
                batch = await self.consumer.getmany(tp, timeout_ms=int(timeout * 1000), max_records=1)
            finally:
                self.consumer.assign([])
        records = batch.get(tp, [])
        if not records or records[0].offset != offset:
            raise NotFound("offset", f"no dead letter at {topic}[{partition}]@{offset}",
                           where=f"{topic}[{partition}]@{offset}")
        record = records[0]
        headers = list(record.headers or ())
        letter = describe(topic, partition, offset, record.timestamp, record.key, headers)
        if letter.original_topic != topic.removesuffix(".dlq"):
            # A header names where the message goes: only ever back to the topic this .dlq belongs to.
            named, own = letter.original_topic[:80], topic.removesuffix(".dlq")
            raise NotFound("elsewhere", f"the dead letter names {named!r}, not {own}", named=named, own=own)
        await self.producer.send_and_wait(letter.original_topic, key=record.key, value=record.value,
                                          headers=replay_headers(headers, topic, partition, offset))
        return letter
