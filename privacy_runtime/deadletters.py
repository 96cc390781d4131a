"""Dead-letter routing exactly as the contract says.

The original key, value and headers go to `<topic>.dlq` unchanged, with `x-error`,
`x-original-topic`, `x-original-partition` and `x-original-offset` added, and `x-dead-lettered-by`
naming the service (several services consume some topics). The send is awaited before the original
offset may be committed, so a bad message is never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from privacy_runtime import metrics
from privacy_runtime.kafka import RenewingProducer
from privacy_runtime.logs import scrub
from schemas.topics import (
    DLQ_HEADER_DEAD_LETTERED_BY,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_ORIGINAL_OFFSET,
    DLQ_HEADER_ORIGINAL_PARTITION,
    DLQ_HEADER_ORIGINAL_TOPIC,
    dlq_topic,
)

log = logging.getLogger(__name__)

ERROR_HEADER_LIMIT = 2000


def dead_letter_headers(
    original_headers: Sequence[tuple[str, bytes]] | None,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    service: str | None = None,
) -> list[tuple[str, bytes]]:
    headers = list(original_headers or [])
    headers += [
        (DLQ_HEADER_ERROR, scrub(error)[:ERROR_HEADER_LIMIT].encode()),
        (DLQ_HEADER_ORIGINAL_TOPIC, topic.encode()),
        (DLQ_HEADER_ORIGINAL_PARTITION, str(partition).encode()),
        (DLQ_HEADER_ORIGINAL_OFFSET, str(offset).encode()),
    ]
    if service is not None:
        headers.append((DLQ_HEADER_DEAD_LETTERED_BY, service.encode()))
    return headers


class DeadLetters:
    def __init__(self, producer: RenewingProducer, service: str | None = None):
        self.producer = producer
        self.service = service

    async def send(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None,
        error: str,
        reason: str,
    ) -> None:
        await self.producer.send_and_wait(
            dlq_topic(topic),
            key=key,
            value=value,
            headers=dead_letter_headers(headers, error, topic, partition, offset, self.service),
        )
        metrics.EVENTS_DEAD_LETTERED.labels(topic=topic, reason=reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d (%s): %s", topic, partition, offset, reason, scrub(error)[:300],
            extra={"topic": topic},
        )
