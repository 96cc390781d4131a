"""Create every contract topic (``schemas.topics.all_topics()``) before services start.

The broker would auto-create topics too, but then a consumer can subscribe before
the topic exists and DLQ topics would get the default partition count. Creating them
up front, with subject and command topics at N partitions (keyed by subject, so N
bounds consumer parallelism) and DLQ topics at 1 (ordering for humans reading them),
gives every run the same layout. Safe to call again: existing topics are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from devstack._proc import DevstackError, say

TOPIC_ALREADY_EXISTS = 36
DLQ_SUFFIX = ".dlq"


def contract_topics() -> tuple[str, ...]:
    from schemas.topics import all_topics

    return tuple(all_topics())


def partitions_for(topic: str, partitions: int = 4, dlq_partitions: int = 1) -> int:
    """DLQ topics get ``dlq_partitions``; subject and command topics get ``partitions``."""
    return dlq_partitions if topic.endswith(DLQ_SUFFIX) else partitions


async def create_topics(
    bootstrap_servers: str,
    *,
    partitions: int = 4,
    dlq_partitions: int = 1,
    replication_factor: int = 1,
    topics: Iterable[str] | None = None,
    within: float = 30.0,
    admin_options: dict[str, object] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names that were created.

    Waits until every topic has a leader for each partition, so a producer that starts
    right after this returns never sees ``UNKNOWN_TOPIC_OR_PARTITION``.
    ``admin_options`` passes security settings (SASL/SSL) for an external cluster.
    """
    names = tuple(topics) if topics is not None else contract_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(admin_options or {}))  # type: ignore[arg-type]
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions_for(name, partitions, dlq_partitions), replication_factor)
            for name in names
            if name not in existing
        ]
        created: list[str] = []
        if wanted:
            response = await admin.create_topics(wanted, timeout_ms=int(within * 1000))
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else ""
                if code == 0:
                    created.append(name)
                elif code != TOPIC_ALREADY_EXISTS:
                    raise DevstackError(
                        f"creating topic {name!r} failed: {for_code(code).__name__} {message}"
                    )
        await _wait_for_leaders(admin, names, time.monotonic() + within)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    say(f"topics: {len(created)} created, {len(names) - len(created)} already there")
    return created


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: tuple[str, ...], deadline: float) -> None:
    pending = set(names)
    while pending:
        described = await admin.describe_topics(list(pending))
        for topic in described:
            partitions = topic.get("partitions") or []
            if (
                topic.get("error_code", 0) == 0
                and partitions
                and all(p.get("leader", -1) >= 0 for p in partitions)
            ):
                pending.discard(topic["topic"])
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DevstackError(f"topics without a leader after creation: {sorted(pending)}")
        await asyncio.sleep(0.1)
