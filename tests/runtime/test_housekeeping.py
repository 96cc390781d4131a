"""Deduplication records are deleted once past their retention, in chunks; newer ones stay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devstack.stack import Stack
from privacy_runtime.housekeeping import sweep
from tests.helpers import scratch_schema

pytestmark = pytest.mark.stack

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "consent" / "migrations"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_schema(stack.endpoints.database_url, "housekeeping", MIGRATIONS) as created:
        yield created


async def test_old_deduplication_records_go_and_recent_ones_stay(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO processed_events (event_id, topic, processed_at) VALUES ($1, 'user-registered', $2)",
            [(f"old-{n}", NOW - timedelta(days=31, minutes=n)) for n in range(7)]
            + [(f"new-{n}", NOW - timedelta(days=29)) for n in range(2)])
        await conn.executemany(
            "INSERT INTO handled_commands (command_id, action, status, handled_at) VALUES ($1, 'erase', 'done', $2)",
            [(uuid.uuid4(), NOW - timedelta(days=91)) for _ in range(4)] + [(uuid.uuid4(), NOW - timedelta(days=1))])

    counts = await sweep(pool, NOW, {"processed_events": timedelta(days=30), "handled_commands": timedelta(days=90)},
                         chunk=3)  # more old rows than one chunk: the pass goes on until none is left

    assert counts == {"processed_events": 7, "handled_commands": 4}
    async with pool.acquire() as conn:
        kept = sorted(r["event_id"] for r in await conn.fetch("SELECT event_id FROM processed_events"))
        assert kept == ["new-0", "new-1"]
        assert await conn.fetchval("SELECT count(*) FROM handled_commands") == 1
    assert await sweep(pool, NOW, {"processed_events": timedelta(days=30)}) == {"processed_events": 0}
