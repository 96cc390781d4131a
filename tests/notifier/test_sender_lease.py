"""A round keeps inside its lease: a slow relay never makes an email go out twice.

The sender runs in-process against a real PostgreSQL (a scratch schema) and a real SMTP server that is
slow per message, with a short lease and the maintenance loop (which retakes rows left in `sending`
past the lease) running beside it, as in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.notifier import rules
from services.notifier.settings import NotifierSettings
from tests.helpers import TEST_MASTER_KEY
from tests.notifier.support import Runtime, arrivals, fill_directory, sender_for, sink_runtime
from tests.notifier.test_sender import queue, row

pytestmark = pytest.mark.stack

LEASE = 2.0  # seconds
PER_MESSAGE = 0.15  # the sink's delay per message: a batch of 24 takes 3.6 s, nearly two leases
EMAILS = 24
DOMAIN = "slow.example"


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def slow_runtime(stack: Any, maildir: Path, delay: float) -> contextlib.AbstractAsyncContextManager[Runtime]:
    return sink_runtime(
        stack,
        maildir,
        delay,
        smtp_timeout_seconds=5.0,
        email_lease_seconds=LEASE,
        email_batch_size=EMAILS,  # the whole queue in one claim, as a big fan-out would be
    )


async def test_a_slow_relay_never_gets_an_email_twice(stack: Any, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    unmarked, expired = counter("privacy_emails_sent_unmarked_total"), counter("privacy_emails_lease_expired_total")
    async with slow_runtime(stack, maildir, PER_MESSAGE) as runtime:
        subjects = await fill_directory(runtime, [f"slow-{i:02d}" for i in range(EMAILS)], domain=DOMAIN)
        ids = [await queue(runtime, s) for s in subjects]
        sender = sender_for(runtime)
        assert sender.batch_size == EMAILS
        maintenance = asyncio.create_task(sender.maintain(interval=0.2))
        rounds = 0
        began = time.monotonic()
        try:
            while True:
                statuses = {(await row(runtime, nid))["status"] for nid in ids}
                if statuses == {"sent"}:
                    break
                assert time.monotonic() - began < 60, f"not all sent within 60 s: {statuses}"
                rounds += 1 if await sender.send_round() else 0
                await asyncio.sleep(0.05)
        finally:
            maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance
            await sender.mailer.close()
        took = time.monotonic() - began
        await asyncio.sleep(PER_MESSAGE * 2)  # a stray second send would have arrived by now
        received = arrivals(maildir)
        print(f"\n{EMAILS} emails at {PER_MESSAGE}s each, lease {LEASE}s: {rounds} rounds, {took:.1f}s")
        assert sorted(received) == sorted(f"{s}@{DOMAIN}" for s in subjects)
        twice = {rcpt: n for rcpt, n in received.items() if n != 1}
        assert twice == {}, f"sent more than once: {twice}"
        assert rounds > 1, "the round should have handed rows back instead of sending past half its lease"
        assert counter("privacy_emails_lease_expired_total") == expired, "a row of a live round was retaken"
        assert counter("privacy_emails_sent_unmarked_total") == unmarked
        for nid in ids:  # handed back rows are not counted as attempts
            assert (await row(runtime, nid))["attempts"] == 1


async def test_a_send_that_would_outlast_the_lease_is_cut_and_handed_back(stack: Any, tmp_path: Path) -> None:
    async with slow_runtime(stack, tmp_path / "mail", delay=30.0) as runtime:
        (subject,) = await fill_directory(runtime, ["stuck-1"], domain=DOMAIN)
        nid = await queue(runtime, subject)
        sender = sender_for(runtime)
        began = time.monotonic()
        try:
            assert await sender.send_round() == 1
        finally:
            await sender.mailer.close()
        took = time.monotonic() - began
        assert LEASE * rules.SEND_BY - 0.1 < took < LEASE, f"the round took {took:.2f}s"
        back = await row(runtime, nid)
        assert back["status"] == "queued" and "lease" in back["last_error"]
        assert back["next_attempt_at"] <= back["updated_at"], "no backoff: it was not the relay's fault"


def test_a_lease_too_short_for_a_send_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"EMAIL_LEASE_SECONDS=0\.5 is too short"):
        NotifierSettings(privacy_master_key=TEST_MASTER_KEY, email_lease_seconds=0.5)  # type: ignore[call-arg]
    fine = NotifierSettings(privacy_master_key=TEST_MASTER_KEY)  # type: ignore[call-arg]
    assert fine.timeouts_beyond_lease() is None, "the defaults fit the default lease"
    short = NotifierSettings(privacy_master_key=TEST_MASTER_KEY, email_lease_seconds=10)  # type: ignore[call-arg]
    assert "SMTP_TIMEOUT_SECONDS=15" in (short.timeouts_beyond_lease() or "")


def test_round_deadlines() -> None:
    deadlines = rules.round_deadlines(100.0, 60.0)
    assert (deadlines.take_new_until, deadlines.send_by, deadlines.lease_ends) == (130.0, 148.0, 160.0)
