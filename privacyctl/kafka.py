"""Publishing events and replaying dead letters with aiokafka (security settings from the env)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privacy_runtime.kafka import aiokafka_options
from privacyctl.config import CtlSettings
from privacyctl.errors import INVALID, LOCAL_STACK_HINT, CtlError
from schemas import topics

REPLAY_GROUP_PREFIX = "privacyctl-replay."

# Connection failures are reported once, as a CtlError with what to set; aiokafka's own log lines
# would only repeat them on stderr.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def client_options(settings: CtlSettings) -> dict[str, Any]:
    """aiokafka options from the same env vars and code the services use."""
    return aiokafka_options(settings)


def _unreachable(settings: CtlSettings, exc: BaseException) -> CtlError:
    return CtlError(
        f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({type(exc).__name__}: {exc}).\n"
        "Set KAFKA_BOOTSTRAP_SERVERS (and KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, "
        f"KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE for a secured cluster); {LOCAL_STACK_HINT}."
    )


async def _start(client: Any, settings: CtlSettings) -> None:
    from aiokafka.errors import KafkaError

    try:
        await asyncio.wait_for(client.start(), timeout=settings.privacyctl_timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await client.stop()
        raise _unreachable(settings, exc) from None


@dataclass(frozen=True)
class Published:
    topic: str
    partition: int
    offset: int


async def publish(settings: CtlSettings, topic: str, key: str, value: bytes) -> Published:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await _start(producer, settings)
    try:
        meta = await asyncio.wait_for(
            producer.send_and_wait(topic, key=key.encode(), value=value), timeout=settings.privacyctl_timeout
        )
    except (TimeoutError, KafkaError) as exc:
        raise CtlError(f"Kafka did not accept the event on {topic!r}: {type(exc).__name__}: {exc}") from None
    finally:
        await producer.stop()
    return Published(meta.topic, meta.partition, meta.offset)


def replay_source(topic: str) -> str:
    """The topic to replay into; ``x.dlq`` is accepted for ``x``. Raises CtlError for others."""
    if topic.endswith(".dlq"):
        topic = topic[: -len(".dlq")]
    if topics.dlq_topic(topic) not in topics.DLQ_TOPICS:
        valid = ", ".join(t[: -len(".dlq")] for t in topics.DLQ_TOPICS)
        raise CtlError(f"{topic!r} has no dead-letter topic; topics with one: {valid}", INVALID)
    return topic


def strip_error_headers(headers: Any) -> list[tuple[str, bytes]]:
    """The original headers: everything but the x-* headers the dead-lettering added."""
    dropped = {*topics.DLQ_HEADERS, topics.DLQ_HEADER_DEAD_LETTERED_BY}
    return [(k, v) for k, v in (headers or ()) if k.lower() not in dropped]


@dataclass(frozen=True)
class Replayed:
    partition: int
    offset: int
    key: bytes | None
    error: str


async def replay(
    settings: CtlSettings,
    topic: str,
    *,
    limit: int | None,
    dry_run: bool,
    on_message: Callable[[Replayed], None] | None = None,
) -> int:
    """Re-publish ``<topic>.dlq`` into ``topic`` from where this tool's group left off; returns the count.

    Reads up to the end offsets seen at the start (messages dead-lettered meanwhile wait for the next
    run). Each message's offset is committed right after it is re-published, so a second run does not
    repeat it; a crash in between repeats at most one message, which the service ignores as a duplicate.
    ``dry_run`` shows what would be replayed and commits nothing.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    source = replay_source(topic)
    dlq = topics.dlq_topic(source)
    options = client_options(settings)
    consumer = AIOKafkaConsumer(
        **options,
        group_id=f"{REPLAY_GROUP_PREFIX}{source}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await _start(consumer, settings)
    # The producer also reads the topic's partitions (the consumer knows only subscribed topics).
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    try:
        await _start(producer, settings)
        if dlq not in await consumer.topics():
            raise CtlError(f"topic {dlq!r} does not exist on {settings.kafka_bootstrap_servers}")
        partitions = [TopicPartition(dlq, p) for p in sorted(await producer.partitions_for(dlq))]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        count = 0
        idle_polls = 0
        while limit is None or count < limit:
            pending = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
            if not pending:
                break
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=100)
            if not batch:
                idle_polls += 1
                if idle_polls * 1.0 >= settings.privacyctl_timeout:
                    raise CtlError(
                        f"no progress reading {dlq!r} for {settings.privacyctl_timeout:g} s; {count} replayed"
                    )
                continue
            idle_polls = 0
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp] or (limit is not None and count >= limit):
                        break
                    headers = dict((k.lower(), v) for k, v in record.headers or ())
                    error = headers.get(topics.DLQ_HEADER_ERROR, b"").decode("utf-8", "replace")
                    if not dry_run:
                        await producer.send_and_wait(
                            source, key=record.key, value=record.value, headers=strip_error_headers(record.headers)
                        )
                        await consumer.commit({tp: record.offset + 1})
                    count += 1
                    if on_message is not None:
                        on_message(Replayed(tp.partition, record.offset, record.key, error))
        return count
    finally:
        await producer.stop()
        await consumer.stop()
