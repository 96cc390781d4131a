"""The sender with several lanes (SMTP_CONNECTIONS=4) in-process, against a real PostgreSQL and a
scripted SMTP server: a batch goes over every connection, each email once; the erasure and restriction
re-check holds while other lanes send; two senders share one queue without sending anything twice.
(A crash with several lanes: test_lanes.py; the one-connection behaviour: test_sender.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest

from devstack.stack import Stack
from services.notifier import store
from services.notifier.delivery import Sender
from tests.helpers import free_port, wait_until
from tests.notifier.support import Runtime, fill_directory, scratch_runtime
from tests.notifier.test_sender import Relay, erase, queue, row, sender_for
from tests.notifier.test_sender import relay as relay  # the fixture

pytestmark = pytest.mark.stack

LANES = 4
#: A notice a restriction holds back (unlike a rights-request notice).
POLICY = {"version": "9", "effective_date": "2026-01-01", "summary_sv": "Ny", "summary_en": "New",
          "url": "https://isopartner.se/p"}


@pytest.fixture
async def lanes(stack: Stack, relay: Relay) -> AsyncIterator[Runtime]:
    async with scratch_runtime(
        stack.env()["DATABASE_URL"],
        smtp_host="127.0.0.1",
        smtp_port=relay.port,
        smtp_starttls=False,
        smtp_connections=LANES,
        email_retry_base_seconds=60,
        consent_base_url=f"http://127.0.0.1:{free_port()}",
        pool_size=2 * LANES + 4,  # room for two senders' lanes at once
    ) as runtime:
        yield runtime


async def close(*senders: Sender) -> None:
    for sender in senders:
        for mailer in sender.mailers:
            await mailer.close()


async def test_a_batch_goes_over_every_lane_and_each_email_once(lanes: Runtime, relay: Relay) -> None:
    subjects = [f"ok-lane-{i:02d}" for i in range(40)]
    await fill_directory(lanes, subjects, domain="relay.example")
    ids = [await queue(lanes, s) for s in subjects]
    sender = sender_for(lanes)
    try:
        assert await sender.send_round() == 40
    finally:
        await close(sender)
    assert relay.ehlos == LANES, "one session per lane, each reused for its share"
    assert sorted(rcpt for rcpt, _ in relay.received) == sorted(f"{s}@relay.example" for s in subjects)
    assert {(await row(lanes, nid))["status"] for nid in ids} == {"sent"}


@pytest.mark.parametrize("per_transaction", [1, 2])
async def test_an_erasure_or_restriction_is_rechecked_while_the_other_lanes_send(
    lanes: Runtime, relay: Relay, per_transaction: int
) -> None:
    """Every lane holds a message at the relay (not answered yet), so it holds the locks of its group's
    recipients (one email per transaction, or two). An erasure of one of those recipients waits for
    its group; an erasure and a restriction of recipients no lane has taken yet go through at once,
    and their emails are not sent."""
    subjects = [f"ok-re-{i:02d}" for i in range(4 * LANES)]  # enough for every lane (rules.lane_count)
    await fill_directory(lanes, subjects, domain="relay.example")
    ids = {s: await queue(lanes, s, "policy_changed", "transactional", POLICY) for s in subjects}
    relay.hold = asyncio.Event()
    sender = sender_for(lanes)
    sender.settings = sender.settings.model_copy(update={"emails_per_send_transaction": per_transaction})
    sending_round = asyncio.ensure_future(sender.send_round())
    try:
        async def all_lanes_in_flight() -> bool:
            return len(relay.received) >= LANES

        await wait_until(all_lanes_in_flight, timeout=30, interval=0.02, what="a message in flight on every lane")
        in_flight = sorted(rcpt.split("@")[0] for rcpt, _ in relay.received)
        assert len(in_flight) == LANES, "one message at a time per lane"
        taken = subjects[:LANES * per_transaction]  # the lanes' groups, in queue order
        assert set(in_flight) <= set(taken)
        waiting = subjects[LANES * per_transaction:]
        in_a_group = [s for s in taken if s not in in_flight][:1]  # locked, its own send still to come
        erased_queued, restricted_queued = waiting[0], waiting[1]
        held_erasures = [asyncio.ensure_future(erase(lanes, s, None)) for s in [in_flight[0], *in_a_group]]
        # Not held up by the lanes: these recipients' emails are in no lane's group.
        assert await asyncio.wait_for(erase(lanes, erased_queued, None), 10) == "done"
        async with lanes.transaction() as tx:
            assert await store.set_restricted(tx.conn, restricted_queued, True)
        assert not any(e.done() for e in held_erasures), "an erasure waits for the group sending to its recipient"
        relay.hold.set()
        assert await asyncio.wait_for(sending_round, 30) == len(subjects)
        for held in held_erasures:
            assert await asyncio.wait_for(held, 10) == "done"
    finally:
        relay.hold.set()
        if not sending_round.done():
            sending_round.cancel()
        await close(sender)
    got = Counter(rcpt.split("@")[0] for rcpt, _ in relay.received)
    assert got == Counter(s for s in subjects if s not in (erased_queued, restricted_queued))
    for erased_in_flight in [in_flight[0], *in_a_group]:
        assert (await row(lanes, ids[erased_in_flight]))["status"] == "sent", "the erasure found it sent"
    assert (await row(lanes, ids[erased_queued]))["status"] == "suppressed"
    restricted = await row(lanes, ids[restricted_queued])
    assert (restricted["status"], restricted["last_error"]) == ("suppressed", "restricted")


async def test_two_senders_with_several_lanes_share_the_queue_without_sending_twice(
    lanes: Runtime, relay: Relay
) -> None:
    """Two senders (as two notifier replicas), four lanes each, claiming small batches from one queue
    at the same time: every email goes exactly once, and both senders take part."""
    subjects = [f"ok-two-{i:03d}" for i in range(160)]
    await fill_directory(lanes, subjects, domain="relay.example")
    ids = [await queue(lanes, s) for s in subjects]
    first, second = sender_for(lanes), sender_for(lanes)
    first.batch_size = second.batch_size = 16  # many claims, so the two interleave

    async def drain(sender: Sender) -> int:
        claimed = 0
        while n := await sender.send_round():
            claimed += n
        return claimed

    try:
        counts = await asyncio.wait_for(asyncio.gather(drain(first), drain(second)), 120)
    finally:
        await close(first, second)
    assert sum(counts) == len(subjects) and min(counts) > 0, f"claimed by each sender: {counts}"
    got = Counter(rcpt for rcpt, _ in relay.received)
    assert got == Counter(f"{s}@relay.example" for s in subjects), "each email exactly once"
    assert {(await row(lanes, nid))["status"] for nid in ids} == {"sent"}


async def test_the_run_loop_claims_ahead_and_hands_that_back_at_shutdown(lanes: Runtime, relay: Relay) -> None:
    """With a backlog the run loop claims the next batch while the lanes finish the current one: every
    email still goes once. At shutdown a batch claimed ahead is handed back, not left in `sending` to
    its lease, and the groups in flight are finished and marked."""
    subjects = [f"ok-ahead-{i:02d}" for i in range(48)]
    await fill_directory(lanes, subjects, domain="relay.example")
    for subject in subjects:
        await queue(lanes, subject)
    sender = sender_for(lanes)
    sender.batch_size = 16
    sender.settings = sender.settings.model_copy(update={"emails_per_send_transaction": 2})
    claims = 0
    claim = sender._claim

    async def counting() -> Any:
        nonlocal claims
        claims += 1
        return await claim()

    sender._claim = counting  # type: ignore[method-assign]
    runner = asyncio.ensure_future(sender.run())
    try:
        async def all_sent() -> bool:
            async with lanes.pool.acquire() as conn:
                return await conn.fetchval("SELECT count(*) FROM emails WHERE status = 'sent'") == len(subjects)

        await wait_until(all_sent, timeout=60, interval=0.1, what="the backlog to be sent")
        assert claims >= 3
        assert Counter(rcpt for rcpt, _ in relay.received) == Counter(f"{s}@relay.example" for s in subjects)

        more = [f"ok-later-{i:02d}" for i in range(32)]
        await fill_directory(lanes, more, domain="relay.example")
        relay.hold = asyncio.Event()
        relay.arrived.clear()
        for subject in more:
            await queue(lanes, subject)
        sender.wakeups.emails.set()

        async def in_flight() -> bool:
            return len(relay.received) >= len(subjects) + LANES

        await wait_until(in_flight, timeout=30, interval=0.02, what="a message in flight on every lane")
        sender._claim_next()  # as the lanes would near the end of their batch
        assert sender._next is not None
        await asyncio.wait_for(asyncio.shield(sender._next), 10)
        runner.cancel()
        relay.hold.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(runner, 30)
    finally:
        if relay.hold is not None:
            relay.hold.set()
        if not runner.done():
            runner.cancel()
    async with lanes.pool.acquire() as conn:
        states = dict(await conn.fetch("SELECT status, count(*) FROM emails WHERE subject LIKE 'ok-later-%' "
                                       "GROUP BY status"))
    assert states.get("sending", 0) == 0, f"rows left to their lease: {states}"
    assert states.get("sent", 0) == 2 * LANES, "the groups in flight (two emails each) were finished and marked"
    assert sum(states.values()) == 32


async def test_a_batch_claimed_ahead_goes_back_to_the_queue_when_the_relay_fails(lanes: Runtime,
                                                                                  relay: Relay) -> None:
    """The relay fails while a batch is claimed ahead: sending pauses, and that batch is handed back due,
    not left in `sending` until its lease."""
    subjects = [f"ok-fail-{i:02d}" for i in range(32)]
    await fill_directory(lanes, subjects, domain="relay.example")
    for subject in subjects:
        await queue(lanes, subject)
    sender = sender_for(lanes)
    sender.batch_size = 16
    relay.hold = asyncio.Event()
    runner = asyncio.ensure_future(sender.run())
    try:
        async def in_flight() -> bool:
            return len(relay.received) >= LANES

        await wait_until(in_flight, timeout=30, interval=0.02, what="a message in flight on every lane")
        sender._claim_next()
        assert sender._next is not None
        await asyncio.wait_for(asyncio.shield(sender._next), 10)

        async def relay_gone(*args: Any) -> None:
            raise aiosmtplib.SMTPServerDisconnected("the relay went away")

        for mailer in sender.mailers:  # the sends after the ones in flight meet a relay failure
            mailer.transmit = relay_gone  # type: ignore[method-assign]
        relay.hold.set()

        async def paused_and_handed_back() -> bool:
            async with lanes.pool.acquire() as conn:
                sending = await conn.fetchval("SELECT count(*) FROM emails WHERE status = 'sending'")
            return sender._paused_until > asyncio.get_running_loop().time() and sending == 0

        await wait_until(paused_and_handed_back, timeout=30, interval=0.05, what="the batches to be handed back")
    finally:
        relay.hold.set()
        runner.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(runner, 30)
    async with lanes.pool.acquire() as conn:
        states = dict(await conn.fetch("SELECT status, count(*) FROM emails GROUP BY status"))
        due = await conn.fetchval("SELECT count(*) FROM emails WHERE status = 'queued' AND next_attempt_at <= now()")
    assert states == {"sent": LANES, "queued": len(subjects) - LANES}, states
    assert due == len(subjects) - LANES, "kept due: they go as soon as the relay is back"
