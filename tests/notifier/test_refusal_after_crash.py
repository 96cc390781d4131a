"""A crash during a fan-out, then a relay refusing for a moment: what they left behind goes out first.

The interleaving the system fault run hit, driven step by step in-process (real PostgreSQL on a scratch
schema, a real SMTP server that answers 451 while refusing): a fan-out queues its first page; a sender
claims it and dies (its rows stay in `sending`); the fan-out walks on and queues the rest of the
directory behind it; the dead claim's lease expires and its rows go back to the queue; the relay
answers 451 to all of them in the next round; then it accepts again.

Those rows are the oldest work in the queue. A temporary refusal delays an email, it must not send it
to the back of the backlog: once due again, the emails the crash and the refusal left behind go out
before the pages queued after them (with a fan-out of thousands, the back of the queue is minutes
away). What is asserted is the order the relay received them in, never how long anything took.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from devstack.smtp_sink import set_refusing
from services.notifier import store
from tests.helpers import wait_until
from tests.notifier.support import PAGE, Runtime, fill_directory, sender_for, sink_runtime
from tests.notifier.test_fanout_resume import fanout, start_notice

pytestmark = pytest.mark.stack

PAGES = 4
DOMAIN = "crash-refuse.example"
LEASE = 2.0  # the shortest lease accepted: the dead claim's rows are retaken after it


def arrival_order(maildir: Path) -> list[str]:
    """Subjects in the order the relay stored their message (file names start with the time in ns)."""
    return [p.name.split("-", 3)[3].removesuffix(f"@{DOMAIN}.eml") for p in sorted(maildir.glob("*.eml"))]


async def statuses(runtime: Runtime, subjects: list[str]) -> dict[str, str]:
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT subject, status FROM emails WHERE subject = ANY($1::text[])", subjects)
    return {r["subject"]: r["status"] for r in rows}


async def test_emails_a_crash_and_a_refusal_left_behind_keep_their_place(stack: Any, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    async with sink_runtime(
        stack,
        maildir,
        0.0,  # the devstack sink's handler: 451 while REFUSE exists
        email_lease_seconds=LEASE,
        email_batch_size=PAGE,  # one round claims one page
        email_retry_base_seconds=0.5,  # as in the system fault run
        email_retry_max_seconds=2.0,
    ) as runtime:
        subjects = await fill_directory(runtime, [f"cr-{i:03d}" for i in range(PAGES * PAGE)], domain=DOMAIN)
        first_page, behind = subjects[:PAGE], subjects[PAGE:]
        assert await start_notice(runtime)
        walk = fanout(runtime)
        assert await walk.step()  # the first page is queued ...

        async with runtime.pool.acquire() as conn:  # ... and claimed by a sender that is then SIGKILLed
            dead_claim = await store.claim_due(conn, PAGE)
        assert sorted(r["subject"] for r in dead_claim) == first_page

        while await walk.step():  # the fan-out walks on (a restarted process resumes it): the backlog
            pass
        assert set((await statuses(runtime, behind)).values()) == {"queued"}

        set_refusing(maildir.parent, True)
        sender = sender_for(runtime)
        try:
            async def lease_expired() -> bool:
                async with runtime.pool.acquire() as conn:
                    return bool(await store.release_expired_leases(conn, LEASE))

            await wait_until(lease_expired, timeout=60, interval=0.1, what="the dead claim's lease to expire")
            # The round after the restart takes the oldest work, the dead claim's rows, and the relay
            # refuses every one of them.
            assert await sender.send_round() == PAGE
            async with runtime.pool.acquire() as conn:
                refused = await conn.fetch(
                    "SELECT subject, attempts, last_error FROM emails WHERE subject = ANY($1::text[])", first_page)
            assert all(r["attempts"] == 2 and "451" in r["last_error"] for r in refused), refused
            assert arrival_order(maildir) == []

            async def refused_ones_due() -> bool:  # their backoff has passed: they may go again
                async with runtime.pool.acquire() as conn:
                    return bool(await conn.fetchval(
                        "SELECT bool_and(status = 'queued' AND next_attempt_at <= now()) FROM emails "
                        "WHERE subject = ANY($1::text[])", first_page))

            await wait_until(refused_ones_due, timeout=30, interval=0.05, what="the refused emails to be due")
            set_refusing(maildir.parent, False)  # the relay accepts again

            async def all_sent() -> bool:
                await sender.send_round()
                return set((await statuses(runtime, subjects)).values()) == {"sent"}

            await wait_until(all_sent, timeout=60, interval=0.01, what="every email to be sent")
        finally:
            set_refusing(maildir.parent, False)
            await sender.mailer.close()
            await asyncio.sleep(0)

        order = arrival_order(maildir)
        assert sorted(order) == subjects, "each recipient exactly once"
        assert set(order[:PAGE]) == set(first_page), (
            f"the emails the crash and the refusal left behind went out after the backlog: {order}")
