"""The fan-out job against a real PostgreSQL: paged, resumable from its cursor, never queues twice.

Runs the fan-out in-process on a schema of its own (no Kafka, no SMTP), so page boundaries, restarts
and concurrent workers can be driven step by step.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.notifier.fanout import FanOut
from services.notifier.intake import Intake
from services.notifier.wakeups import Wakeups
from tests.notifier.support import PAGE, Runtime, fill_directory

pytestmark = pytest.mark.stack

RECIPIENTS = 50  # 7 full pages and one of 1


async def start_notice(runtime: Runtime, notice_id: str = "tx-1") -> bool:
    intake = Intake(runtime, runtime.settings)
    params = {
        "kind": "merger",
        "counterparty": "Acme AB",
        "effective_date": "2026-01-01",
        "data_categories": ["contact"],
        "notice_url": "https://isopartner.se/m",
    }
    async with runtime.transaction() as tx:
        return await intake.start_fanout(tx, "merger-notice", notice_id, "merger_notice", params)


def fanout(runtime: Runtime) -> FanOut:
    return FanOut(runtime, runtime.settings, Wakeups(runtime.settings.database_url))


async def queued(runtime: Runtime) -> list[str]:
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT subject FROM emails ORDER BY subject")
    return [r["subject"] for r in rows]


async def job(runtime: Runtime) -> Any:
    async with runtime.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM fanout_jobs")


async def test_pages_commit_with_their_cursor_and_a_restart_resumes_after_it(runtime: Runtime) -> None:
    subjects = await fill_directory(runtime, [f"fo-{i:04d}" for i in range(RECIPIENTS)])
    assert await start_notice(runtime)
    first = fanout(runtime)
    for _ in range(3):
        assert await first.step()
    state = await job(runtime)
    assert state["last_subject"] == subjects[3 * PAGE - 1] and state["queued"] == 3 * PAGE and not state["done"]
    assert await queued(runtime) == subjects[: 3 * PAGE]

    # The process dies here; a new one picks the job up where the cursor says.
    second = fanout(runtime)
    while await second.step():
        pass
    state = await job(runtime)
    assert state["done"] and state["queued"] == RECIPIENTS and state["finished_at"] is not None
    assert await queued(runtime) == subjects
    async with runtime.pool.acquire() as conn:
        ids = await conn.fetch("SELECT notification_id, template, category, locale, status FROM emails")
    assert {r["notification_id"] for r in ids} == {f"merger-notice:tx-1:{s}" for s in subjects}
    assert {(r["template"], r["category"], r["locale"], r["status"]) for r in ids} == {
        ("merger_notice", "transactional", None, "queued")
    }


async def test_a_replayed_notice_or_rewound_cursor_queues_nothing_twice(runtime: Runtime) -> None:
    subjects = await fill_directory(runtime, [f"fo-{i:04d}" for i in range(RECIPIENTS)])
    assert await start_notice(runtime)
    assert not await start_notice(runtime), "the same notice starts no second job"
    worker = fanout(runtime)
    while await worker.step():
        pass
    async with runtime.pool.acquire() as conn:
        await conn.execute("UPDATE fanout_jobs SET last_subject = '', done = false")  # as if the cursor was lost
    while await worker.step():
        pass
    assert await queued(runtime) == subjects


async def test_concurrent_workers_share_a_job_without_duplicates(runtime: Runtime) -> None:
    subjects = await fill_directory(runtime, [f"fo-{i:04d}" for i in range(RECIPIENTS)])
    assert await start_notice(runtime, "tx-a")
    assert await start_notice(runtime, "tx-b")

    async def drain(worker: FanOut) -> None:
        while await worker.step():
            pass

    await asyncio.gather(*(drain(fanout(runtime)) for _ in range(3)))
    rows = await queued(runtime)
    assert len(rows) == 2 * RECIPIENTS and sorted(set(rows)) == subjects


async def test_an_empty_directory_finishes_at_once(runtime: Runtime) -> None:
    assert await start_notice(runtime)
    assert await fanout(runtime).step()
    state = await job(runtime)
    assert state["done"] and state["queued"] == 0
    assert not await fanout(runtime).step()
