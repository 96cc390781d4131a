"""The retention sweeper deletes what is no longer needed, and only that, and requests the erasure of
subjects inactive past the data map's retention (real PostgreSQL)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from devstack.stack import Stack
from privacy_runtime.unit_of_work import PoolRuntime
from schemas.topics import ERASURE_REQUESTED
from services.dsar import cases, inactivity, retention, store
from services.dsar.settings import DsarSettings
from tests.helpers import scratch_schema

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


async def test_sweep_deletes_expired_packages_and_old_closed_cases_only(stack: Stack) -> None:
    async with scratch_schema(stack.endpoints.database_url, "dsar_retention", DSAR_SQL, max_size=1) as pool:
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
            await conn.execute("INSERT INTO failed_verifications (subject, failed_at) VALUES ('s', $1), ('s', $2)",
                               NOW - timedelta(days=2), NOW - timedelta(hours=1))
            counts = await store.purge_expired(conn, NOW, NOW - timedelta(days=3 * 365))
            assert counts == {"exports": 2, "export_fragments": 2, "verifications": 2, "corrections": 2, "cases": 1,
                              "failed_verifications": 1}
            remaining = {r["request_id"] for r in await conn.fetch("SELECT request_id FROM cases")}
            assert remaining == {open_case, recent}
            packages = {r["token_hash"]: bytes(r["package_sealed"])
                        for r in await conn.fetch("SELECT token_hash, package_sealed FROM exports")}
            assert packages == {"live": b"\x00", "expired": b"", "used-up": b""}, "spent packages are wiped"
            sealed = await conn.fetchval("SELECT corrections_sealed FROM cases WHERE request_id = $1", open_case)
            assert sealed is not None, "an open case keeps what it still needs"
            assert await store.purge_expired(conn, NOW, NOW - timedelta(days=3 * 365)) == {
                "exports": 0, "export_fragments": 0, "verifications": 0, "corrections": 0, "cases": 0,
                "failed_verifications": 0}


async def test_a_restriction_still_in_force_is_kept_past_the_case_retention(stack: Stack) -> None:
    # Lifting it needs the case (Art. 18(3)), and the subject's other restrictions are judged against it.
    def restriction(lifted: bool, review: bool = False) -> cases.Case:
        case = cases.new_case(request_id=str(uuid.uuid4()), subject="s", right=cases.RESTRICTION,
                              received_at=NOW - timedelta(days=5 * 365), identity_verified=True,
                              requested_via="web_form")
        return replace(case, status=cases.COMPLETED, closed_at=NOW - timedelta(days=4 * 365),
                       restriction_lifted=lifted, manual_review=review)

    in_force, lifted, failed_lift = restriction(False), restriction(True), restriction(True, review=True)
    async with scratch_schema(stack.endpoints.database_url, "dsar_retention", DSAR_SQL, max_size=1) as pool:
        async with pool.acquire() as conn:
            for case in (in_force, lifted, failed_lift):
                assert await store.insert_case(conn, case, None)
            counts = await store.purge_expired(conn, NOW, NOW - timedelta(days=3 * 365))
            assert counts["cases"] == 1
            remaining = {str(r["request_id"]) for r in await conn.fetch("SELECT request_id FROM cases")}
            assert remaining == {in_force.request_id, failed_lift.request_id}, "the lifted one goes"


# --- inactive subjects: activity, selection and the sweep that requests their erasure -----------------


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_schema(stack.endpoints.database_url, "dsar_inactive", DSAR_SQL) as created:
        yield created


async def _runtime(pool: asyncpg.Pool) -> PoolRuntime:
    runtime = PoolRuntime("dsar", DsarSettings(privacy_master_key=base64.b64encode(os.urandom(32)).decode()), pool)
    await runtime.start()
    return runtime


async def _active(runtime: PoolRuntime, **times: datetime) -> None:
    async with runtime.transaction() as tx:
        await store.record_activity(tx.conn, {s: (at, runtime.keyring.subject_digest(s)) for s, at in times.items()})


async def _activity(pool: asyncpg.Pool) -> dict[str, tuple[datetime, datetime | None]]:
    rows = await pool.fetch("SELECT subject, last_activity_at, erasure_requested_at FROM subject_activity")
    return {r["subject"]: (r["last_activity_at"], r["erasure_requested_at"]) for r in rows}


async def test_newest_activity_wins_and_a_late_older_event_does_not_move_it_back(pool: asyncpg.Pool) -> None:
    runtime = await _runtime(pool)
    t0 = NOW - timedelta(days=100)
    await _active(runtime, a=t0, b=t0)
    await _active(runtime, a=t0 - timedelta(days=50), b=t0 + timedelta(days=1))
    assert await _activity(pool) == {"a": (t0, None), "b": (t0 + timedelta(days=1), None)}
    # An erased subject is not recorded again by a late event (it would be swept a second time).
    async with runtime.transaction() as tx:
        await tx.conn.execute("INSERT INTO erased_subjects (subject_digest) VALUES ($1)",
                           runtime.keyring.subject_digest("gone"))
    await _active(runtime, gone=NOW)
    assert "gone" not in await _activity(pool)
    # The subject's activity goes with the subject.
    async with runtime.transaction() as tx:
        await store.erase_subject_records(tx.conn, "a")
    assert set(await _activity(pool)) == {"b"}


async def test_recording_names_the_subjects_whose_activity_moved(pool: asyncpg.Pool) -> None:
    # Those are the ones whose retention erasure waiting for review may be cancelled; a replay moves none.
    runtime = await _runtime(pool)
    t0 = NOW - timedelta(days=100)
    digest = runtime.keyring.subject_digest
    async with runtime.transaction() as tx:
        assert await store.record_activity(tx.conn, {s: (t0, digest(s)) for s in ("b", "a")}) == ["a", "b"]
        assert await store.record_activity(tx.conn, {"a": (t0, digest("a")), "b": (t0 + timedelta(days=1), digest("b")),
                                                  "c": (t0 - timedelta(days=9), digest("c"))}) == ["b", "c"]
        assert await store.record_activity(tx.conn, {"a": (t0 - timedelta(days=1), digest("a"))}) == []


async def test_selection_takes_inactive_subjects_oldest_first_once_and_skips_open_or_restricted(
    pool: asyncpg.Pool,
) -> None:
    runtime = await _runtime(pool)
    cutoff = NOW - timedelta(days=1095)
    old = cutoff - timedelta(days=1)
    await _active(runtime, oldest=old - timedelta(days=1), older=old, recent=cutoff + timedelta(days=1),
                  in_case=old, restricted=old)
    async with runtime.transaction() as tx:
        await tx.conn.execute(
            "INSERT INTO cases (request_id, subject, case_right, status, received_at, due_at, state) "
            "VALUES ($1, 'in_case', 'access', 'in_progress', $2, $2, '{}'::jsonb)", uuid.uuid4(), old)
        await store.set_restricted(tx.conn, "restricted", True)
        assert await store.claim_inactive(tx.conn, cutoff, NOW, 1) == [("oldest", old - timedelta(days=1))]
        assert await store.claim_inactive(tx.conn, cutoff, NOW, 10) == [("older", old)]
        assert await store.claim_inactive(tx.conn, cutoff, NOW, 10) == [], "each stretch of inactivity once"
    assert (await _activity(pool))["oldest"][1] == NOW
    # The subject came back (still long ago, say a late consent change): the mark is cleared.
    await _active(runtime, oldest=old - timedelta(hours=1))
    async with runtime.transaction() as tx:
        assert await store.claim_inactive(tx.conn, cutoff, NOW, 10) == [("oldest", old - timedelta(hours=1))]


async def test_the_sweep_publishes_retention_erasures_paged_bounded_and_never_twice(pool: asyncpg.Pool) -> None:
    runtime = await _runtime(pool)
    old = NOW - timedelta(days=1200)
    subjects = [f"inactive-{n}" for n in range(5)]
    await _active(runtime, **{s: old + timedelta(minutes=n) for n, s in enumerate(subjects)},
                  active=NOW - timedelta(days=1))
    counted = REGISTRY.get_sample_value("privacy_retention_erasures_requested_total") or 0.0

    async def sweep() -> int:
        return await retention.request_erasures(runtime, NOW, retention_days=1095, page_size=2, max_per_pass=3)

    assert [await sweep(), await sweep(), await sweep()] == [3, 2, 0]
    assert REGISTRY.get_sample_value("privacy_retention_erasures_requested_total") == counted + 5

    requests = "SELECT key, subject, value FROM outbox WHERE topic = $1 ORDER BY id"
    rows = await pool.fetch(requests, ERASURE_REQUESTED)
    events = [json.loads(r["value"]) for r in rows]
    assert all(r["subject"] is None for r in rows), "no PII: published unsealed"
    assert [bytes(r["key"]).decode() for r in rows] == [e["subject"] for e in events], "keyed by subject"
    assert [e["subject"] for e in events] == subjects, "oldest first"
    for n, event in enumerate(events):
        request_id = inactivity.retention_request_id(event["subject"], old + timedelta(minutes=n))
        assert event["data"] == {"request_id": request_id, "ground": "retention_expired",
                                 "identity_verified": True, "requested_via": "internal"}
        assert event["id"] == inactivity.retention_event_id(request_id)
    audit = await pool.fetch("SELECT subject, ref, detail FROM audit_log WHERE action = 'retention_erasure_requested'")
    assert sorted(r["subject"] for r in audit) == subjects
    assert {r["ref"] for r in audit} == {e["data"]["request_id"] for e in events}

    # Had the marks been lost (a crash between publish and commit cannot do this, a restore could),
    # the same requests and event ids come out again: downstream they are duplicates.
    await pool.execute("UPDATE subject_activity SET erasure_requested_at = NULL")
    await retention.request_erasures(runtime, NOW, retention_days=1095, page_size=10, max_per_pass=10)
    again = [json.loads(r["value"]) for r in await pool.fetch(requests, ERASURE_REQUESTED)][5:]
    assert [e["id"] for e in again] == [e["id"] for e in events]


# --- reminders before the due date -----------------------------------------------------------------


async def test_an_extension_re_arms_the_reminder_before_the_new_due_date(pool: asyncpg.Pool) -> None:
    case = cases.new_case(request_id=str(uuid.uuid4()), subject="s", right=cases.ACCESS,
                          received_at=NOW - timedelta(days=29), identity_verified=True, requested_via="web_form")
    soon = timedelta(days=3)
    async with pool.acquire() as conn:
        assert await store.insert_case(conn, case, None)
        assert [r["request_id"] for r in await store.claim_due_soon(conn, NOW, NOW + soon)] == [uuid.UUID(case.request_id)]
        assert await store.claim_due_soon(conn, NOW, NOW + soon) == [], "reminded once"
        await store.save_case(conn, case)  # saved unchanged (an ack): still reminded
        assert await store.claim_due_soon(conn, NOW, NOW + soon) == []

        extended = cases.extend(case, 1, "many systems hold data", NOW).case
        assert extended.due_at > case.due_at + timedelta(days=27)
        await store.save_case(conn, extended)
        assert await store.claim_due_soon(conn, NOW, NOW + soon) == [], "the new due date is not near yet"
        later = extended.due_at - timedelta(days=2)
        reminded = await store.claim_due_soon(conn, later, later + soon)
        assert [(r["request_id"], r["due_at"]) for r in reminded] == [(uuid.UUID(case.request_id), extended.due_at)]
        assert await store.claim_due_soon(conn, later, later + soon) == []
