"""Housekeeping: the technical deduplication records every service keeps, removed once they can no
longer matter.

- `processed_events` (the claim of each event id handled) only has to outlive any re-delivery of that
  event: the inbound topics keep events 7 days, dead letters 14 (deploy/k8s), and a replay of a dead
  letter is not a duplicate (a dead-lettered event is never claimed). Default: 30 days.
- `handled_commands` (a command answered as a downstream system) only has to outlive the sender's
  re-sends of it, which stop once our answer arrives. Default: 90 days.

Commands this service issued and their answers are kept: they are the record that each system was
told. Deleting happens in chunks, each its own short transaction, so that a large backlog of old rows
never holds locks for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.unit_of_work import Runtime

log = logging.getLogger(__name__)

#: Table -> its time column. Both are indexed by time (BRIN, runtime migration 0006).
PURGED = {"processed_events": "processed_at", "handled_commands": "handled_at"}
CHUNK = 10_000


async def purge_older_than(conn: asyncpg.Connection, table: str, before: datetime, chunk: int = CHUNK) -> int:
    """Delete up to `chunk` rows of `table` recorded before `before`; returns how many went."""
    column = PURGED[table]  # a fixed name from this module, never input
    deleted = await conn.fetchval(
        f"WITH gone AS (DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {column} < $1 "
        f"LIMIT $2) RETURNING 1) SELECT count(*) FROM gone",
        before, chunk,
    )
    return int(deleted)


async def sweep(
    pool: asyncpg.Pool, now: datetime, retention: dict[str, timedelta], chunk: int = CHUNK
) -> dict[str, int]:
    """One pass over every purged table; returns the rows deleted per table."""
    counts: dict[str, int] = {}
    for table, keep in retention.items():
        total = 0
        while True:
            async with pool.acquire() as conn:
                deleted = await purge_older_than(conn, table, now - keep, chunk)
            total += deleted
            if deleted < chunk:
                break
            await asyncio.sleep(0)  # let the service's own work in between chunks
        counts[table] = total
        metrics.HOUSEKEEPING_DELETED.labels(table=table).inc(total)
    return counts


async def housekeeping_loop(runtime: Runtime, clock: Callable[[], datetime]) -> None:
    settings = runtime.settings
    retention = {
        "processed_events": timedelta(days=settings.processed_events_retention_days),
        "handled_commands": timedelta(days=settings.handled_commands_retention_days),
    }
    while True:
        counts = await sweep(runtime.pool, clock(), retention)
        if any(counts.values()):
            log.info("housekeeping: deleted %s", ", ".join(f"{n} {t} rows" for t, n in counts.items()))
        await asyncio.sleep(settings.housekeeping_seconds)
