"""A batch claimed ahead whose lease runs out before its lanes get to it is never sent a second time.

The interleaving behind a duplicate under load: sender A claims a batch ahead (while its lanes finish
the previous one), the batch waits longer than its lease, the maintenance loop retakes the rows, sender
B claims and sends them, and only then do A's lanes reach the batch. Each step is driven explicitly
(no timing luck): the sender's own calls (`_claim_next`, `_next_round`, `maintain`, `send_round`)
against a real PostgreSQL (a scratch schema) and the devstack's real SMTP sink, with a short lease
whose expiry is waited for on the database's clock, the one the maintenance loop goes by.

A lane's own clock is a monotonic clock read before the claim; a loop starved between that reading
and the send, or a stepped clock, can leave a lane believing it is in time. So the tests also hand A's
batch fresh deadlines: the row lock and the claim checked under it must stop the send on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from services.notifier import rules
from services.notifier.delivery import Lanes, Sender
from tests.helpers import wait_until
from tests.notifier import support
from tests.notifier.support import Runtime, arrivals, fill_directory, sink_runtime
from tests.notifier.test_sender import queue

pytestmark = pytest.mark.stack

LEASE = 2.0  # seconds (the shortest accepted): the expiry is waited for, never slept through
LANES = 4
EMAILS = 16
DOMAIN = "ahead.example"


def sink_and_runtime(stack: Any, maildir: Path) -> contextlib.AbstractAsyncContextManager[Runtime]:
    return sink_runtime(
        stack,
        maildir,
        0.0,  # the devstack sink's handler, answering at once
        smtp_timeout_seconds=5.0,
        email_lease_seconds=LEASE,
        smtp_connections=LANES,
        pool_size=2 * LANES + 4,  # two senders' lanes at once
    )


def sender_for(runtime: Runtime) -> Sender:
    sender = support.sender_for(runtime)
    sender.batch_size = EMAILS  # the whole queue in one claim
    return sender


async def close(*senders: Sender) -> None:
    for sender in senders:
        for mailer in sender.mailers:
            await mailer.close()
        await sender.consent.close()


async def statuses(runtime: Runtime) -> dict[str, int]:
    async with runtime.pool.acquire() as conn:
        return dict(await conn.fetch("SELECT status, count(*) FROM emails GROUP BY status"))


async def queued_emails(runtime: Runtime, tag: str) -> list[str]:
    subjects = await fill_directory(runtime, [f"{tag}-{i:02d}" for i in range(EMAILS)], domain=DOMAIN)
    for subject in subjects:
        await queue(runtime, subject)
    return subjects


async def claim_ahead(sender: Sender) -> Lanes:
    """What the run loop does when the lanes run low: claim the next batch in the background."""
    sender._claim_next()
    assert sender._next is not None
    lanes = await asyncio.shield(sender._next)
    assert lanes is not None and lanes.claimed == EMAILS
    return lanes


async def wait_for_lease_expiry(runtime: Runtime) -> None:
    async def expired() -> bool:
        async with runtime.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT bool_and(claimed_at < now() - make_interval(secs => $1)) FROM emails "
                "WHERE status = 'sending'", LEASE))

    await wait_until(expired, timeout=60, interval=0.05, what="the claimed rows' lease to expire")


async def retake(runtime: Runtime, sender: Sender) -> None:
    """Run the maintenance loop (as in the service) until it has retaken every abandoned row."""
    maintenance = asyncio.ensure_future(sender.maintain(interval=0.1))
    try:
        async def retaken() -> bool:
            return "sending" not in await statuses(runtime)

        await wait_until(retaken, timeout=30, interval=0.05, what="the expired rows to be retaken")
    finally:
        maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance


def in_time_by_its_own_clock(lanes: Lanes) -> None:
    """The lanes' clock has not seen the lease pass (a starved loop, a stepped clock)."""
    lanes.deadlines = rules.round_deadlines(asyncio.get_running_loop().time(), LEASE)


def assert_each_once(maildir: Path, subjects: list[str]) -> None:
    received = arrivals(maildir)
    assert sorted(received) == sorted(f"{s}@{DOMAIN}" for s in subjects)
    twice = {rcpt: n for rcpt, n in received.items() if n != 1}
    assert twice == {}, f"sent more than once: {twice}"


@pytest.mark.parametrize("own_clock", ["expired", "in_time"])
async def test_a_batch_claimed_ahead_and_retaken_after_its_lease_is_sent_once(
    stack: Any, tmp_path: Path, own_clock: str
) -> None:
    maildir = tmp_path / "mail"
    async with sink_and_runtime(stack, maildir) as runtime:
        subjects = await queued_emails(runtime, f"ahead-{own_clock}")
        first, second = sender_for(runtime), sender_for(runtime)
        try:
            ahead = await claim_ahead(first)
            await wait_for_lease_expiry(runtime)
            await retake(runtime, second)
            assert await second.send_round() == EMAILS
            assert await statuses(runtime) == {"sent": EMAILS}
            if own_clock == "in_time":
                in_time_by_its_own_clock(ahead)
            # Only now do the first sender's lanes get to the batch they claimed ahead.
            assert await first._next_round() == EMAILS
        finally:
            await close(first, second)
        assert_each_once(maildir, subjects)
        assert await statuses(runtime) == {"sent": EMAILS}


async def test_a_stale_claim_meeting_rows_another_sender_holds_sends_nothing(stack: Any, tmp_path: Path) -> None:
    """The rows were retaken and claimed by a second sender that has not sent them yet: the first
    sender's lanes (their own clock in time) leave them alone, and the second sends each once."""
    maildir = tmp_path / "mail"
    async with sink_and_runtime(stack, maildir) as runtime:
        subjects = await queued_emails(runtime, "held")
        first, second = sender_for(runtime), sender_for(runtime)
        try:
            ahead = await claim_ahead(first)
            await wait_for_lease_expiry(runtime)
            await retake(runtime, second)
            theirs = await second._claim()
            assert theirs is not None and theirs.claimed == EMAILS
            in_time_by_its_own_clock(ahead)
            await first._next_round()
            assert arrivals(maildir) == {}, "the stale claim sent"
            assert await statuses(runtime) == {"sending": EMAILS}, "the stale claim touched the new claim's rows"
            await second._send(theirs)
        finally:
            await close(first, second)
        assert_each_once(maildir, subjects)
        assert await statuses(runtime) == {"sent": EMAILS}


async def test_a_claim_past_the_safe_part_of_its_lease_hands_its_rows_back_unsent(stack: Any, tmp_path: Path) -> None:
    """The lease has run out by the database's clock, the rows are not retaken yet, and the lanes' own
    clock says they are in time: nothing is sent by that claim (the maintenance loop of another replica
    may retake a row the moment its lock is let go); the rows go back due, their attempt not counted,
    and the next round sends each once."""
    maildir = tmp_path / "mail"
    async with sink_and_runtime(stack, maildir) as runtime:
        subjects = await queued_emails(runtime, "late")
        first, second = sender_for(runtime), sender_for(runtime)
        try:
            stale = await first._claim()
            assert stale is not None and stale.claimed == EMAILS
            await wait_for_lease_expiry(runtime)
            in_time_by_its_own_clock(stale)
            await first._send(stale)
            assert arrivals(maildir) == {}, "sent on a claim past its lease"
            async with runtime.pool.acquire() as conn:
                back = await conn.fetch("SELECT status, attempts, last_error, next_attempt_at <= now() AS due "
                                        "FROM emails")
            assert {(r["status"], r["attempts"], r["due"]) for r in back} == {("queued", 0, True)}
            assert any(rules.LEASE_RUNNING_OUT in r["last_error"] for r in back)
            assert await second.send_round() == EMAILS
        finally:
            await close(first, second)
        assert_each_once(maildir, subjects)
        assert await statuses(runtime) == {"sent": EMAILS}
