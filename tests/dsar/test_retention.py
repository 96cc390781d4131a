"""The retention sweeper deletes what is no longer needed, and only that (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from privacy_runtime.migrations import apply_migrations
from services.dsar import store

pytestmark = pytest.mark.stack

DSAR_SQL = Path(__file__).resolve().parents[2] / "services" / "dsar" / "migrations"
NOW = datetime(2030, 6, 1, tzinfo=UTC)


async def _case(conn: asyncpg.Connection, closed_at: datetime | None) -> uuid.UUID:
    rid = uuid.uuid4()
    await conn.execute(
        "INSERT INTO cases (request_id, subject, case_right, status, received_at, due_at, closed_at, state, "
        "corrections_sealed) VALUES ($1, 's', 'access', $2, $3, $3, $4, '{}'::jsonb, '\\x01'::bytea)",
        rid, "completed" if closed_at else "in_progress", NOW - timedelta(days=40), closed_at)
    await conn.execute(
        "INSERT INTO verifications (request_id, code_hash, expires_at) VALUES ($1, 'h', $2)", rid, NOW)
    await conn.execute(
        "INSERT INTO export_fragments (request_id, system, status) VALUES ($1, 'accounts', 'done')", rid)
    return rid


async def test_sweep_deletes_expired_packages_and_old_closed_cases_only(stack) -> None:  # type: ignore[no-untyped-def]
    schema = f"dsar_retention_{uuid.uuid4().hex[:8]}"
    dsn = stack.endpoints.database_url
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    pool = await asyncpg.create_pool(dsn, server_settings={"search_path": schema}, min_size=1, max_size=1)
    assert pool is not None
    try:
        await apply_migrations(pool, schema, DSAR_SQL)
        async with pool.acquire() as conn:
            open_case = await _case(conn, None)
            recent = await _case(conn, NOW - timedelta(days=10))
            ancient = await _case(conn, NOW - timedelta(days=4 * 365))
            assert ancient != recent
            for token, expires, left in (("live", NOW + timedelta(days=1), 3), ("expired", NOW - timedelta(seconds=1), 3),
                                         ("used-up", NOW + timedelta(days=1), 0)):
                await conn.execute(
                    "INSERT INTO exports (token_hash, request_id, subject, media_type, filename, package_sealed, "
                    "expires_at, downloads_left) VALUES ($1, $2, 's', 'application/json', 'p.json', '\\x00'::bytea, $3, $4)",
                    token, open_case, expires, left)
            counts = await store.purge_expired(conn, NOW, NOW - timedelta(days=3 * 365))
            assert counts == {"exports": 2, "export_fragments": 2, "verifications": 2, "corrections": 2, "cases": 1}
            remaining = {r["request_id"] for r in await conn.fetch("SELECT request_id FROM cases")}
            assert remaining == {open_case, recent}
            packages = {r["token_hash"]: bytes(r["package_sealed"])
                        for r in await conn.fetch("SELECT token_hash, package_sealed FROM exports")}
            assert packages == {"live": b"\x00", "expired": b"", "used-up": b""}, "spent packages are wiped"
            sealed = await conn.fetchval("SELECT corrections_sealed FROM cases WHERE request_id = $1", open_case)
            assert sealed is not None, "an open case keeps what it still needs"
            assert await store.purge_expired(conn, NOW, NOW - timedelta(days=3 * 365)) == {
                "exports": 0, "export_fragments": 0, "verifications": 0, "corrections": 0, "cases": 0}
    finally:
        await pool.close()
