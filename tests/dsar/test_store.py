"""The dsar service's SQL on a real PostgreSQL: what `store` keeps when answers arrive more than once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.dsar import store
from tests.helpers import scratch_schema

pytestmark = pytest.mark.stack

DSAR_SQL = Path(__file__).resolve().parents[2] / "services" / "dsar" / "migrations"


@pytest.fixture
async def pool(stack) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    async with scratch_schema(stack.endpoints.database_url, "dsar_store", DSAR_SQL) as created:
        yield created


async def _fragments(pool: asyncpg.Pool, request_id: str) -> dict[str, tuple[str, bytes | None]]:
    async with pool.acquire() as conn:
        rows = await store.fragments(conn, request_id)
    return {r["system"]: (r["status"], bytes(r["fragment_sealed"]) if r["fragment_sealed"] else None) for r in rows}


async def test_a_retried_export_replaces_the_failed_fragment_but_nothing_replaces_an_answer(pool: asyncpg.Pool) -> None:
    rid = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await store.put_fragment(conn, rid, "accounts", "failed", None)
        await store.put_fragment(conn, rid, "billing", "done", b"billing data")
        # The operator approved a retry; accounts now answers with its data.
        await store.put_fragment(conn, rid, "accounts", "done", b"accounts data")
        # A late or repeated answer never overwrites data already received.
        await store.put_fragment(conn, rid, "billing", "failed", None)
        await store.put_fragment(conn, rid, "accounts", "done", b"other")
    assert await _fragments(pool, rid) == {"accounts": ("done", b"accounts data"), "billing": ("done", b"billing data")}
