"""The dsar service's SQL on a real PostgreSQL: what `store` keeps when answers arrive more than once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devstack.stack import Stack
from services.dsar import cases, store
from tests.helpers import scratch_schema

pytestmark = pytest.mark.stack

DSAR_SQL = Path(__file__).resolve().parents[2] / "services" / "dsar" / "migrations"


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
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


async def test_deadline_counts_count_cases_waiting_for_an_operator_open_or_completed(pool: asyncpg.Pool) -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)

    def case(right: str, status: str, review: bool, days_left: int = 20) -> cases.Case:
        made = cases.new_case(request_id=str(uuid.uuid4()), subject="s", right=right,
                              received_at=now - timedelta(days=5), identity_verified=True, requested_via="web_form")
        closed = now if status in cases.TERMINAL else None
        return replace(made, status=status, manual_review=review, closed_at=closed,
                       due_at=now + timedelta(days=days_left))

    async with pool.acquire() as conn:
        for made in (
            case(cases.ERASURE, cases.IN_PROGRESS, True),  # e.g. a retention erasure to confirm
            case(cases.ERASURE, cases.IN_PROGRESS, True, days_left=-1),
            case(cases.ERASURE, cases.AWAITING_SYSTEMS, False),
            case(cases.RESTRICTION, cases.COMPLETED, True),  # a lift that failed
            case(cases.RESTRICTION, cases.COMPLETED, False),
            case(cases.ACCESS, cases.COMPLETED, False),
        ):
            assert await store.insert_case(conn, made, None)
        counts = {r["case_right"]: dict(r) for r in await store.deadline_counts(conn, now, now + timedelta(days=3))}
    assert counts == {
        cases.ERASURE: {"case_right": cases.ERASURE, "open": 3, "overdue": 1, "due_soon": 0, "awaiting_review": 2},
        cases.RESTRICTION: {"case_right": cases.RESTRICTION, "open": 0, "overdue": 0, "due_soon": 0,
                            "awaiting_review": 1},
    }
