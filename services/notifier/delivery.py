"""SMTP delivery from the `emails` outbox: claim, send over SMTP_CONNECTIONS lanes, mark sent.

How a round works:

1. In one short transaction the sender claims due rows (`FOR UPDATE SKIP LOCKED`, so several notifier
   processes can share the queue), sets them to `sending` with the claim time, and commits. With a
   backlog (a full batch), the next batch is claimed while the lanes finish the current one, so they
   do not wait for it; a batch claimed ahead and not sent (the relay failed, shutdown) is handed back.
2. The batch is dealt to the sending lanes (SMTP_CONNECTIONS per process, fewer for a small batch:
   `rules.lane_count`). Each lane has its own SMTP connection, kept open and reused (reconnected after a
   failure), and its own database connection, and takes the next group of emails in queue order
   whenever it is free (at most EMAILS_PER_SEND_TRANSACTION, and no more than its share of what is
   left). Each email is decided (erased? restricted? marketing consent?), rendered, rate-limited by a
   token bucket shared by the lanes (SMTP_RATE_PER_SECOND, per process: replicas add up) and sent over
   the lane's connection. The session is made ready (connect, STARTTLS, EHLO, AUTH, or a NOOP if the
   connection was idle) before step 3, holding no lock.
3. Right before the group's sends, in a transaction of its own, its emails are checked again under
   row locks, in one round trip: each recipient's directory entry is share-locked, then the email's
   row (the order an erasure takes them in), and both are read fresh. A row no longer `sending` by
   this claim (an erasure cancelled it, or its lease expired and it was retaken: the claim time is
   the claim's token) is left alone; a row whose lease is past 80% by the database's clock (the one
   the maintenance loop retakes rows by; a starved event loop can get here later than its own
   deadlines say) is handed back untried and the round stops; a recipient erased or restricted since
   the claim gets nothing (suppressed). Only the holder of a row's current claim, inside its lease,
   ever sends it.
4. Under those locks only the messages' own SMTP transactions run, one after the other (MAIL FROM,
   RCPT, DATA; never a connect: a session found lost there is a relay failure, retried after the pause
   below). Once the group is through, the rows the relay accepted (250 after DATA) are marked `sent`
   in that transaction's COMMIT. Its locks are held across the sends, so an erasure or restriction
   arriving meanwhile waits for the group's message transactions (at most SMTP_TIMEOUT_SECONDS per
   reply) instead of overtaking them, and never for a relay that is slow to connect or log in. The
   group stops at its first failure: the emails accepted before it are marked all the same, the
   failing one is handled as below, and the untried rest goes back in line.

A round keeps inside its lease (EMAIL_LEASE_SECONDS), however slow the relay or the consent check: it
starts no email after half the lease has passed since the claim and hands the untried rest back to the
queue, and a send still running at 80% of the lease is cut (and retried), so every row is marked or
handed back before the maintenance loop could take it for abandoned and queue it again. Should a row
still have been retaken by the time it is marked `sent` (only if the `sent` commit failed and was
retried without the locks), that is logged and counted in `privacy_emails_sent_unmarked_total`.

On shutdown (the runtime cancels the round) the group in flight on each lane is let finish, sends and
`sent` commit, for up to SHUTDOWN_GRACE_SECONDS; then the untried rest is handed back. When one lane
meets a relay failure or runs out of time, no lane starts another group of the round.

Failures: a 4xx reply to an email is temporary: the row goes back to `queued` with exponential backoff
and jitter (EMAIL_RETRY_BASE_SECONDS doubling up to EMAIL_RETRY_MAX_SECONDS) until
EMAIL_GIVE_UP_AFTER_SECONDS. The backoff only says when it may be tried again: it keeps its place in the
queue (claimed by when it was queued), so once due it goes before the emails queued after it. A failure
of the relay itself (unreachable, TLS, a refused EHLO/HELO or login such as 535 for a wrong password, a
refused MAIL FROM such as 530 "STARTTLS first", a dropped connection) is no email's fault, whatever its
code: the process (all its lanes) pauses sending with that backoff (by the relay's failures in a row), reopens the
connection after it, and logs a warning. The emails stay due meanwhile (no backoff of their own), so
`privacy_email_oldest_due_seconds` keeps growing through an outage however long the pauses get. Only a
5xx refusal of the recipient (RCPT) or of the message (after DATA), or a message that can never be
rendered, is permanent: the row becomes `failed` and an audit entry records it. No row is ever deleted,
so nothing is lost.

The crash window (the only way an email can be sent twice): an email is marked `sent` only after the
relay accepted it, so a crash can never lose one. If the process dies *after* the relay accepted the
message and *before* the `sent` commit of step 4, the row stays in `sending` (at most one group per
lane, so at most SMTP_CONNECTIONS x EMAILS_PER_SEND_TRANSACTION per process and crash: each group has
its own transaction); once its lease (EMAIL_LEASE_SECONDS, default 60 s) has expired it is claimed
again and sent a second time. That window is measured by the histogram
`privacy_email_unconfirmed_seconds` (from each email's 250 to its group's commit: a few milliseconds
per email sent after it in the group), and a failed `sent` commit is retried until the lease ends
before the row is left to it. (The other,
rarer case: a send cut at 80% of its lease after the relay had already taken the message.) Every
message carries a Message-ID derived from its notification_id, the same on every attempt, so a
receiver can recognise such a duplicate. Rows re-taken after an expired lease are counted in
`privacy_emails_lease_expired_total`.

The erasure window: what the notifier has committed before the re-check of step 3 is never overtaken
(an erasure cancels the row and deletes the entry in one transaction, a restriction updates the entry,
and both wait for the lock a send holds). What remains: an erasure or restriction still on its way
through Kafka (not yet applied by the notifier) cannot be seen; an email that took its locks before the
erasure did goes out, the erasure waiting for it (ordered before it, as a moment earlier it would); a
`sent` commit that failed is retried without the locks (counted as unmarked if an erasure came in
between); and the address, name and marketing consent are the ones read at the claim and the consent
check, so a rectified address or an opt-out committed during the few seconds between them and the
send is not seen by that send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from enum import Enum
from typing import Any

import asyncpg

from privacy_runtime import metrics
from privacy_runtime.crypto import DecryptionFailed
from privacy_runtime.db import TRANSIENT_DB_ERRORS, OneTripTransaction
from privacy_runtime.logs import scrub
from privacy_runtime.tokens import MANAGE, UNSUBSCRIBE, TokenSigner
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from services.notifier import rules, store, templates
from services.notifier.consent_client import ConsentDecisions
from services.notifier.final_notices import FINAL_TEMPLATES, FinalNoticeKeys
from services.notifier.intake import erased_among, params_field
from services.notifier.mailer import Mailer
from services.notifier.render_cache import NoticeRenderer
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups

log = logging.getLogger(__name__)

#: On cancellation, how long the email in flight may take to be sent and marked before it is given up
#: (and left to its lease).
SHUTDOWN_GRACE_SECONDS = 5.0


class Outcome(Enum):
    """What the round does after one email."""

    NEXT = "next"
    CONNECTION_LOST = "connection_lost"  # the relay failed: hand the rest back and pause sending
    OUT_OF_TIME = "out_of_time"  # the send was cut at the lease's deadline: hand the rest back


@dataclass
class Claimed:
    row: asyncpg.Record
    recipient: rules.Recipient | None
    erased: bool
    params: dict[str, Any] | None
    #: Why it cannot be sent at all (recorded as a permanent failure), e.g. a key that does not open.
    problem: str | None = None
    #: Held back by a verified erasure case of the subject (not one of that case's own emails).
    held: bool = False

    @property
    def notification_id(self) -> str:
        return str(self.row["notification_id"])

    @property
    def template(self) -> str:
        return str(self.row["template"])


class Lanes:
    """A claimed batch dealt to the sending lanes: each takes the next email in queue order when it is
    free, until the batch is done or the round stops taking new emails (half the lease has passed, the
    relay failed, a send ran out of time, shutdown); what is left is handed back."""

    def __init__(self, batch: list[Claimed], deadlines: rules.RoundDeadlines):
        self.deadlines = deadlines
        self.claimed = len(batch)
        self._pending = deque(batch)
        self.why_stopped: str | None = None
        self._running_low: tuple[int, Callable[[], None]] | None = None

    def when_running_low(self, left: int, call: Callable[[], None]) -> None:
        """Call `call` once, when no more than `left` emails are waiting for a lane."""
        self._running_low = (left, call)

    def take(self, now: float, most: int = 1, lanes: int = 1) -> list[Claimed]:
        """The next emails in queue order for a lane (`rules.group_share`; none: the round is over)."""
        if self.why_stopped is None and now >= self.deadlines.take_new_until:
            self.stop("half the lease had passed")
        if self.why_stopped is not None:
            return []
        group = [self._pending.popleft() for _ in range(rules.group_share(len(self._pending), lanes, most))]
        if self._running_low is not None and len(self._pending) <= self._running_low[0]:
            call, self._running_low = self._running_low[1], None
            call()
        return group

    def put_back(self, group: list[Claimed]) -> None:
        """Emails a lane took and did not try (its group stopped early): first in line again."""
        self._pending.extendleft(reversed(group))

    def stop(self, why: str) -> None:
        """No lane starts another email (the first reason is the one recorded)."""
        if self.why_stopped is None:
            self.why_stopped = why

    def untried(self) -> list[Claimed]:
        rest, self._pending = list(self._pending), deque()
        return rest


class Sender:
    def __init__(self, runtime: Runtime, settings: NotifierSettings, wakeups: Wakeups, consent: ConsentDecisions):
        self.runtime = runtime
        self.keyring = runtime.keyring
        self.settings = settings
        self.wakeups = wakeups
        self.consent = consent
        #: One SMTP connection per sending lane (SMTP_CONNECTIONS), each kept open across rounds.
        self.mailers = [Mailer(settings) for _ in range(settings.smtp_connections)]
        self.bucket = rules.TokenBucket(settings.smtp_rate_per_second)
        #: A notice's templates run once for all its recipients (render_cache.py).
        self.renderer = NoticeRenderer()
        self.batch_size = rules.claim_batch_size(
            settings.email_batch_size, settings.smtp_rate_per_second, settings.email_lease_seconds
        )
        self.envelope_from = parseaddr(settings.smtp_from)[1] or settings.smtp_from
        self.unsubscribe_tokens = TokenSigner(settings.master_key(), UNSUBSCRIBE, settings.previous_master_key())
        self.manage_tokens = TokenSigner(settings.master_key(), MANAGE, settings.previous_master_key())
        self.context = templates.Context(
            contact_email=settings.privacy_contact_email,
            public_base_url=settings.public_base_url,
            privacy_center_url=settings.privacy_center_url,
        )
        self._connection_failures = 0
        #: The batch claimed ahead while the lanes finish the current one (run loop only).
        self._next: asyncio.Future[Lanes | None] | None = None
        #: Loop time before which no round starts: the relay failed (see _failed_attempt).
        self._paused_until = 0.0
        self.final_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())
        if problem := settings.timeouts_beyond_lease():
            log.warning("%s", problem)

    @property
    def group_size(self) -> int:
        """The most emails a lane sends under one transaction (`rules.send_group_size`)."""
        return rules.send_group_size(self.settings.emails_per_send_transaction, self.bucket.burst)

    @property
    def mailer(self) -> Mailer:
        """The first lane's connection (the only one with SMTP_CONNECTIONS=1)."""
        return self.mailers[0]

    # --- loops -------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                if (pause := self._paused_until - loop.time()) > 0:
                    await asyncio.sleep(pause)  # not cut short by new emails: the relay is the problem
                try:
                    claimed = await self._next_round()
                    if self._next is not None and self._paused_until > loop.time():
                        await self._drop_next("not tried: the SMTP relay is failing")
                except TRANSIENT_DB_ERRORS as exc:
                    log.warning("sender waiting for the database (%s)", type(exc).__name__)
                    claimed = 0
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("send round failed; retrying")
                    claimed = 0
                    await asyncio.sleep(1.0)
                if claimed == 0:
                    await self.wakeups.emails.wait_for(self.settings.email_idle_poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drop_next("not tried: shutting down"), 5.0)
            for mailer in self.mailers:
                await mailer.close()
            await self.consent.close()

    async def _next_round(self) -> int:
        """One round of the run loop: the batch claimed ahead, or a new claim. A full batch means a
        backlog: the next one is claimed when the lanes are about to run out of this one, so they go
        on without waiting for a claim (a claimed row is no duplicate risk: its lease covers it)."""
        task, self._next = self._next, None
        lanes = await task if task is not None else await self._claim()
        if lanes is None:
            return 0
        if lanes.claimed >= self.batch_size:  # each lane has at most one more group to go: claim the next
            width = rules.lane_count(lanes.claimed, len(self.mailers))
            lanes.when_running_low(width * self.group_size, self._claim_next)
        await self._send(lanes)
        return lanes.claimed

    async def maintain(self, interval: float = 2.0) -> None:
        """Retake rows whose sender died (expired lease) and keep the gauges current."""
        while True:
            try:
                async with self.runtime.pool.acquire() as conn:
                    expired = await store.release_expired_leases(conn, self.settings.email_lease_seconds)
                    if expired:
                        metrics.EMAILS_LEASE_EXPIRED.inc(len(expired))
                        log.warning("%d emails were left in sending past the lease; retrying them", len(expired))
                        self.wakeups.emails.set()
                    await store.purge_final_notices(conn)
                    metrics.EMAIL_QUEUE_DEPTH.set(await store.queue_depth(conn))
                    ages = await store.oldest_due(conn)
                    for priority, queue in rules.QUEUES.items():
                        metrics.EMAIL_OLDEST_DUE_SECONDS.labels(queue=queue).set(ages.get(priority, 0.0))
                    metrics.FANOUT_IN_PROGRESS.set(await store.open_fanouts(conn))
            except Exception as exc:
                log.warning("notifier maintenance pass failed: %s", type(exc).__name__)
            await asyncio.sleep(interval)

    # --- one round ---------------------------------------------------------------------------

    async def send_round(self) -> int:
        """Claim a batch and work through it over the lanes; returns how many rows were claimed."""
        lanes = await self._claim()
        if lanes is None:
            return 0
        await self._send(lanes)
        return lanes.claimed

    async def _claim(self) -> Lanes | None:
        """Claim a batch (None: nothing is due) and open what it needs, ready for the lanes."""
        loop = asyncio.get_running_loop()
        # Taken before the claim: the rows' claimed_at (the lease's start) is a little later than this.
        deadlines = rules.round_deadlines(loop.time(), self.settings.email_lease_seconds)
        async with self.runtime.transaction() as tx:  # the runtime's: it settles keys loaded in it
            rows = await store.claim_due(tx.conn, self.batch_size)
            if not rows:
                return None
            batch = await self._prepare(tx, rows)
        return Lanes(batch, deadlines)

    def _claim_next(self) -> None:
        """Claim the next batch while the lanes finish this one (a backlog: they need not wait for it)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._claim())

    async def _drop_next(self, why: str) -> None:
        """Hand back a batch claimed ahead that will not be sent now (waits for its claim to end, so no
        row is left in `sending` to its lease)."""
        task, self._next = self._next, None
        if task is None:
            return
        try:
            lanes = await asyncio.shield(task)
        except Exception:  # the claim failed: nothing was claimed
            return
        if lanes is not None:
            lanes.stop(why)
            await self._hand_back(lanes)

    async def _send(self, lanes: Lanes) -> None:
        """Work through a claimed batch over the lanes; what they did not take is handed back."""
        width = rules.lane_count(lanes.claimed, len(self.mailers))
        tasks = [asyncio.ensure_future(self._lane(mailer, lanes, width)) for mailer in self.mailers[:width]]
        try:
            await asyncio.gather(*tasks)
        except BaseException as exc:
            # Shutting down (or a lane failed): every lane finishes the group it has in flight (each
            # within SHUTDOWN_GRACE_SECONDS, see _lane); what no lane took is handed back below.
            lanes.stop("shutting down" if isinstance(exc, asyncio.CancelledError) else "a sending lane failed")
            for task in tasks:
                task.cancel()
            await _all_done(tasks)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._hand_back(lanes), 2.0)
            raise
        await self._hand_back(lanes)

    async def _lane(self, mailer: Mailer, lanes: Lanes, width: int) -> None:
        """One sending lane: its own SMTP connection and database connection, a group of at most
        EMAILS_PER_SEND_TRANSACTION emails at a time, each group in its own transaction (so a crash
        leaves at most one group per lane unconfirmed)."""
        loop = asyncio.get_running_loop()
        deadlines = lanes.deadlines
        async with self.runtime.pool.acquire() as conn:
            while group := lanes.take(loop.time(), self.group_size, width):
                # Shielded: a cancellation (shutdown) must not cut a send between the relay's 250 and
                # the `sent` commit.
                in_flight = asyncio.ensure_future(self._deliver(conn, mailer, group, deadlines, lanes))
                try:
                    outcome = await asyncio.shield(in_flight)
                except asyncio.CancelledError:
                    await _finish(in_flight, SHUTDOWN_GRACE_SECONDS)
                    raise
                if outcome is Outcome.CONNECTION_LOST:
                    # Still due: they go as soon as the relay is back, and their wait shows.
                    lanes.stop("the SMTP relay is failing")
                elif outcome is Outcome.OUT_OF_TIME:
                    lanes.stop("the lease's deadline had passed")

    async def _hand_back(self, lanes: Lanes) -> None:
        """Give the rows no lane took back to the queue (their attempt does not count)."""
        untried = lanes.untried()
        if untried:
            async with self.runtime.pool.acquire() as conn:
                await self._release(conn, untried, 0.0, f"not tried: {lanes.why_stopped}")

    async def _prepare(self, tx: UnitOfWork, rows: list[asyncpg.Record]) -> list[Claimed]:
        """Decrypt what the batch needs while the claim transaction is open (keys are cached after)."""
        conn = tx.conn
        subjects = sorted({r["subject"] for r in rows})
        found = await store.recipients(conn, subjects)
        finals = await store.final_notices(conn, sorted({r["subject"] for r in rows if r["final_notice"]}))
        erased = await erased_among(self.keyring, conn, set(subjects))  # never trust a cached key alone
        await tx.keys.ensure_keys(set(found) - erased)
        batch = []
        for row in rows:
            if row["final_notice"]:
                try:
                    batch.append(self._prepare_final(row, finals.get(row["subject"])))
                except DecryptionFailed as exc:  # one email fails, not the batch (the claim would repeat)
                    batch.append(Claimed(row, None, False, None, problem=f"cannot open its final notice: {exc}"))
                continue
            subject = row["subject"]
            entry = found.get(subject)
            recipient = None
            params = None
            if entry is not None and subject not in erased:
                try:
                    email = await tx.keys.decrypt(subject, "email", entry["email_sealed"])
                    if email is None:  # key gone: erased in the meantime
                        erased.add(subject)
                    else:
                        recipient = rules.Recipient(
                            subject=subject,
                            email=email,
                            name=await tx.keys.decrypt(subject, "name", entry["name_sealed"]),
                            locale=entry["locale"],
                            country=entry["country"],
                            restricted=entry["restricted"],
                        )
                        sealed = row["params_sealed"]
                        if sealed is not None:
                            plain = await tx.keys.decrypt(
                                subject, params_field(row["notification_id"]), sealed
                            )
                            params = json.loads(plain) if plain else None
                except DecryptionFailed as exc:  # this email fails, not the batch (the claim would repeat)
                    batch.append(Claimed(row, None, False, None, problem=f"cannot open the recipient's entry: {exc}"))
                    continue
            batch.append(Claimed(row, recipient, subject in erased, params))
        holds = await store.erasure_holds(conn, subjects)  # verified erasure cases: only their own emails
        return [replace(item, held=rules.held_for_erasure(holds.get(item.row["subject"], frozenset()), item.params))
                for item in batch]

    def _prepare_final(self, row: asyncpg.Record, final: asyncpg.Record | None) -> Claimed:
        """An erasure confirmation: addressed from the final notice, or nowhere once that is gone."""
        subject = row["subject"]
        if final is None:
            return Claimed(row, None, True, None)
        key = self.final_keys.unwrap(subject, final["wrapped_key"], final["master_key_id"])
        contact = self.final_keys.open_contact(subject, key, final["contact_sealed"])
        params = None
        if row["params_sealed"] is not None:
            params = json.loads(self.final_keys.open_params(key, row["notification_id"], row["params_sealed"]))
        recipient = rules.Recipient(
            subject=subject,
            email=contact.email,
            name=contact.name,
            locale=contact.locale,
            country=None,
            restricted=False,
        )
        return Claimed(row, recipient, False, params)

    async def _deliver(
        self,
        conn: asyncpg.Connection,
        mailer: Mailer,
        group: list[Claimed],
        deadlines: rules.RoundDeadlines,
        lanes: Lanes,
    ) -> Outcome:
        """Decide and compose each email of a lane's group, then send those that may go under one
        transaction (`_send_group`); the consent checks, rate wait and SMTP sends are cut at
        `deadlines.send_by`."""
        now = datetime.now(UTC)
        ready: list[tuple[Claimed, bytes]] = []
        for position, item in enumerate(group):
            decided = await self._decide(conn, item, now, deadlines)
            if decided is Outcome.OUT_OF_TIME:  # nothing of the group goes now: back, untried
                rest = [waiting for waiting, _ in ready] + group[position + 1:]
                await self._release(conn, rest, 0.0, "not tried: the consent check ran into the lease's deadline")
                return Outcome.OUT_OF_TIME
            if isinstance(decided, bytes):
                ready.append((item, decided))
        if not ready:
            return Outcome.NEXT
        return await self._send_group(conn, mailer, ready, deadlines, lanes)

    async def _decide(
        self, conn: asyncpg.Connection, item: Claimed, now: datetime, deadlines: rules.RoundDeadlines
    ) -> bytes | Outcome:
        """One email before the locks: its message when it may be sent, else what was done with it (a
        suppression, deferral or failure recorded: NEXT; its consent check out of time: OUT_OF_TIME,
        the email handed back)."""
        row = item.row
        if item.problem is not None:
            await self._fail(item, item.problem)
            return Outcome.NEXT
        verdict = self._verdict(item, now)
        if verdict.needs_consent:
            try:
                async with asyncio.timeout_at(deadlines.send_by):
                    allowed = await self.consent.allowed(row["subject"])
            except TimeoutError:
                await self._release(conn, [item], 0.0, "not tried: the consent check ran into the lease's deadline")
                return Outcome.OUT_OF_TIME
            verdict = self._verdict(item, now, marketing_allowed=allowed is True, consent_unavailable=allowed is None)
        if verdict.action is rules.Action.SUPPRESS:
            await self._suppress(conn, item, verdict.reason)
            return Outcome.NEXT
        if verdict.action is rules.Action.DEFER:
            delay = rules.retry_delay(
                row["attempts"], self.settings.email_retry_base_seconds, self.settings.email_retry_max_seconds
            )
            await store.mark_retry(conn, item.notification_id, row["claimed_at"], delay, verdict.reason)
            return Outcome.NEXT
        assert item.recipient is not None
        try:
            return self._message(item, item.recipient, now)
        except (templates.TemplateProblem, rules.InvalidAddress) as exc:
            await self._fail(item, f"cannot compose: {exc}")
            return Outcome.NEXT

    async def _send_group(
        self,
        conn: asyncpg.Connection,
        mailer: Mailer,
        ready: list[tuple[Claimed, bytes]],
        deadlines: rules.RoundDeadlines,
        lanes: Lanes,
    ) -> Outcome:
        """Steps 3 and 4 of the module's docstring for a group: its rows re-checked under locks in one
        round trip, each email that may still go sent, and all of them marked in one commit. The group
        stops at the first failure: what the relay accepted before it is marked, the failing email is
        retried or failed as alone, and the untried rest is put back in line."""
        # The group goes once the last of its tokens is due (none goes before its own).
        wait = max(self.bucket.reserve() for _ in ready)
        accepted: list[tuple[Claimed, float]] = []
        refused: list[tuple[Claimed, str]] = []
        tried = 0  # emails of `ready` gone through (sent or refused); the next one failed if any did
        transmitting = False
        failure: Exception | None = None
        cut = asyncio.timeout_at(deadlines.send_by)
        # Held from the re-check across the sends to the `sent` commit (see the module's docstring).
        locked = OneTripTransaction(conn)
        try:
            async with cut:
                if wait > 0:
                    await asyncio.sleep(wait)
                # The session is set up before the locks are taken: however long the relay takes to
                # greet or log us in, nobody waits for it. Under the locks only MAIL/RCPT/DATA run, and
                # a session lost meanwhile is not reopened there (a relay failure: rolled back, retried).
                await mailer.ready()
                await locked.start()
                current = await store.lock_for_sending(
                    conn,
                    [(item.notification_id, item.row["claimed_at"]) for item, _ in ready],
                    self.settings.email_lease_seconds * rules.SEND_BY,
                )
                for item, message in ready:
                    refusal = _recheck(item, current.get(item.notification_id))
                    if refusal is None:
                        assert item.recipient is not None
                        transmitting = True
                        started = time.perf_counter()
                        await mailer.transmit(message, self.envelope_from, item.recipient.email)
                        transmitting = False
                        accepted.append((item, time.perf_counter()))
                        metrics.EMAIL_SEND_SECONDS.observe(accepted[-1][1] - started)
                        self._connection_failures = 0
                    else:
                        refused.append((item, refusal))
                    tried += 1
        except Exception as exc:
            failure = exc
        except BaseException:
            # Cancelled past the shutdown grace: what the relay has is still marked, if it can be.
            if accepted:
                with contextlib.suppress(BaseException):
                    await locked.commit(_sent_statement(accepted))
            await _rollback(locked)
            raise
        await self._settle(conn, locked, accepted, refused, deadlines.lease_ends)
        outcome = Outcome.OUT_OF_TIME if any(r == rules.LEASE_RUNNING_OUT for _, r in refused) else Outcome.NEXT
        if failure is None:
            return outcome
        failed, rest = ready[tried][0], [item for item, _ in ready[tried + 1:]]
        lanes.put_back(rest)
        if cut.expired():
            # Not a relay failure: no backoff, and an attempt only if the relay was being talked to.
            await store.mark_retry(conn, failed.notification_id, failed.row["claimed_at"], 0.0,
                                   "send cut at the lease's deadline", count_attempt=transmitting)
            log.warning(
                "email %s: send cut at %.0f%% of the lease; retried", failed.notification_id, 100 * rules.SEND_BY
            )
            return Outcome.OUT_OF_TIME
        kind, description = rules.classify(failure)
        await self._failed_attempt(conn, failed, kind, scrub(description))
        return Outcome.CONNECTION_LOST if kind is rules.Failure.CONNECTION else outcome

    async def _settle(
        self,
        conn: asyncpg.Connection,
        locked: OneTripTransaction,
        accepted: list[tuple[Claimed, float]],
        refused: list[tuple[Claimed, str]],
        lease_ends: float,
    ) -> None:
        """End a group's transaction: the refusals recorded and `sent` riding on the COMMIT (the locks
        held since the re-check, every row `sending` by this claim, leave the updates nothing to miss).
        If the database hiccups, each accepted email is marked again on a fresh connection until the
        lease ends (the crash window); a refusal's record is then left to its lease."""
        suppressed: list[str] = []
        for item, reason in refused:
            if reason == rules.NOT_CLAIMED:  # already suppressed by the erasure, or another claim's now
                log.info("email %s: no longer this claim's at the send; not sent", item.notification_id)
            elif reason == rules.LEASE_RUNNING_OUT:  # a starved loop got here late: back, untried
                log.warning("email %s: %s at the send; handed back", item.notification_id, reason)
        writes = [(item, reason) for item, reason in refused if reason != rules.NOT_CLAIMED]
        if not accepted and not writes:
            await _rollback(locked)
            return
        try:
            for item, reason in writes:
                claimed_at = item.row["claimed_at"]
                if reason == rules.LEASE_RUNNING_OUT:
                    await store.mark_retry(conn, item.notification_id, claimed_at, 0.0, f"not tried: {reason}",
                                           count_attempt=False)
                elif await store.mark_final(conn, item.notification_id, claimed_at, rules.Status.SUPPRESSED, reason):
                    suppressed.append(reason)
            await locked.commit(_sent_statement(accepted) if accepted else None)
            unmarked: set[str] = set()
        except TRANSIENT_DB_ERRORS:
            await _rollback(locked)
            suppressed = []
            unmarked = {item.notification_id for item, _ in accepted
                        if not await self._mark_sent_again(conn, item, lease_ends)}
        except BaseException:
            await _rollback(locked)
            raise
        committed = time.perf_counter()
        for reason in suppressed:
            metrics.EMAILS_SUPPRESSED.labels(reason=reason).inc()
        for item, accepted_at in accepted:
            metrics.EMAIL_UNCONFIRMED_SECONDS.observe(committed - accepted_at)
            if item.notification_id in unmarked:
                # Retaken after its lease (another send may follow) or cancelled by an erasure while the
                # locks were lost to a database failure.
                metrics.EMAILS_SENT_UNMARKED.inc()
                log.warning(
                    "email %s was accepted by the relay but its row was no longer this claim's "
                    "(lease expired or cancelled); it may be sent again",
                    item.notification_id,
                )
            if item.template in FINAL_TEMPLATES:  # the last email went (an erase may have raced it): shred
                await store.delete_final_notice(conn, item.row["subject"])
            metrics.EMAILS_SENT.labels(template=item.template).inc()

    def _verdict(self, item: Claimed, now: datetime, marketing_allowed: bool | None = None,
                 consent_unavailable: bool = False) -> rules.Verdict:
        return rules.verdict(
            template=item.template,
            category=item.row["category"],
            recipient=item.recipient,
            erased=item.erased,
            waited=now - item.row["created_at"],
            unknown_grace=timedelta(seconds=self.settings.email_unknown_recipient_grace_seconds),
            marketing_allowed=marketing_allowed,
            consent_unavailable=consent_unavailable,
            give_up=timedelta(seconds=self.settings.email_give_up_after_seconds),
            held=item.held,
        )

    def _message(self, item: Claimed, recipient: rules.Recipient, now: datetime) -> bytes:
        row = item.row
        if item.params is None:
            raise templates.TemplateProblem("the email's params are gone")
        locale = templates.locale_of(recipient.locale or row["locale"])
        unsubscribe = None
        if row["category"] == rules.MARKETING:
            # `l`: the confirmation page opens in the language of the email.
            token = self.unsubscribe_tokens.sign({"s": recipient.subject, "p": rules.MARKETING_PURPOSE, "l": locale})
            unsubscribe = rules.unsubscribe_url(self.settings.consent_public_url, token)
        manage = rules.manage_url(self.settings.privacy_center_url, self.manage_tokens.sign({"s": recipient.subject}))
        context = templates.Context(
            contact_email=self.context.contact_email,
            public_base_url=self.context.public_base_url,
            recipient_name=recipient.name,
            unsubscribe_url=unsubscribe,
            privacy_center_url=self.context.privacy_center_url,
            manage_url=manage,
        )
        rendered = self.renderer.render(item.template, locale, item.params, context)
        return rules.compose(
            rendered,
            sender=self.settings.smtp_from,
            to_email=recipient.email,
            to_name=recipient.name,
            message_id=row["message_id"],
            category=row["category"],
            unsubscribe=unsubscribe,
            date=now,
        )

    # --- outcomes ----------------------------------------------------------------------------

    async def _mark_sent_again(self, conn: asyncpg.Connection, item: Claimed, lease_ends: float) -> bool:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            try:
                if conn.is_closed():
                    async with self.runtime.pool.acquire() as fresh:
                        return await store.mark_sent(fresh, item.notification_id, item.row["claimed_at"])
                return await store.mark_sent(conn, item.notification_id, item.row["claimed_at"])
            except TRANSIENT_DB_ERRORS as exc:
                if loop.time() > lease_ends:
                    log.error("could not record a sent email (%s); its lease will resend it", type(exc).__name__)
                    raise
                delay = min(delay * 2, 2.0)

    async def _failed_attempt(self, conn: asyncpg.Connection, item: Claimed, kind: rules.Failure, error: str) -> None:
        row = item.row
        if kind is rules.Failure.PERMANENT:
            await self._fail(item, error)
            return
        delay = rules.retry_delay(
            row["attempts"], self.settings.email_retry_base_seconds, self.settings.email_retry_max_seconds
        )
        if kind is rules.Failure.CONNECTION:
            # The relay, not this email: this process pauses sending with the backoff, and the emails
            # stay due (no backoff of their own), so privacy_email_oldest_due_seconds shows the outage.
            self._connection_failures = rules.count_failure(self._connection_failures)
            pause = self._reconnect_delay()
            self._paused_until = asyncio.get_running_loop().time() + pause
            delay = 0.0
            log.warning("SMTP relay failure (%s): sending paused for %.0f s, emails kept due", error, pause)
        give_up = timedelta(seconds=self.settings.email_give_up_after_seconds)
        if rules.gives_up(row["created_at"], datetime.now(UTC), give_up):
            await self._fail(item, f"still failing after {give_up}: {error}")
            return
        await store.mark_retry(conn, item.notification_id, row["claimed_at"], delay, f"{kind}: {error}")
        metrics.EMAILS_RETRIED.inc()

    async def _fail(self, item: Claimed, error: str) -> None:
        async with self.runtime.transaction() as tx:
            if item.template in FINAL_TEMPLATES:
                await store.delete_final_notice(tx.conn, item.row["subject"])
            failed = rules.Status.FAILED
            if await store.mark_final(tx.conn, item.notification_id, item.row["claimed_at"], failed, error):
                await tx.audit.record(
                    "email_failed",
                    subject=item.row["subject"],
                    ref=item.notification_id,
                    detail={
                        "template": item.template,
                        "attempts": item.row["attempts"],
                        "error": error[:500],
                    },
                )
        metrics.EMAILS_FAILED.labels(template=item.template).inc()
        log.warning("email %s failed permanently: %s", item.notification_id, error[:300])

    async def _suppress(self, conn: asyncpg.Connection, item: Claimed, reason: str) -> None:
        if await store.mark_final(conn, item.notification_id, item.row["claimed_at"], rules.Status.SUPPRESSED, reason):
            metrics.EMAILS_SUPPRESSED.labels(reason=reason).inc()

    def _reconnect_delay(self) -> float:
        return rules.retry_delay(
            self._connection_failures,
            self.settings.email_retry_base_seconds,
            self.settings.email_retry_max_seconds,
        )

    async def _release(self, conn: asyncpg.Connection, items: list[Claimed], delay: float, reason: str) -> None:
        """Hand back claimed rows that were not tried (their attempt does not count)."""
        for item in items:
            await store.mark_retry(
                conn, item.notification_id, item.row["claimed_at"], delay, reason, count_attempt=False
            )


def _recheck(item: Claimed, current: asyncpg.Record | None) -> str | None:
    """The re-check's verdict on one email of a group from its row read under the locks (none: gone)."""
    if current is None:
        return rules.NOT_CLAIMED
    return rules.recheck(
        item.template,
        params=item.params,
        claimed=current["claimed"],
        in_time=current["in_time"],
        final_notice=current["final_notice"],
        listed=current["listed"],
        restricted=current["restricted"],
        holds=current["holds"],
    )


def _sent_statement(accepted: list[tuple[Claimed, float]]) -> str:
    return store.mark_sent_statement([(item.notification_id, item.row["claimed_at"]) for item, _ in accepted])


async def _rollback(transaction: OneTripTransaction) -> None:
    """End a transaction that may not have begun, or whose connection broke (then it is gone anyway)."""
    with contextlib.suppress(Exception):
        await transaction.rollback()


async def _all_done(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every lane to end (each bounds its own wait); a repeated cancellation does not end it."""
    while not all(task.done() for task in tasks):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.warning("a sending lane failed: %r", task.exception())


async def _finish(task: asyncio.Future[Outcome], grace: float) -> None:
    """Wait up to `grace` seconds for a delivery in flight (a repeated cancellation does not end the
    wait early); past it the delivery is cancelled and its row left to the lease."""
    loop = asyncio.get_running_loop()
    until = loop.time() + grace
    while not task.done():
        left = until - loop.time()
        if left <= 0:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # let it let go of the connection
                await asyncio.wait({task}, timeout=1.0)
            break
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=left)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("email in flight at shutdown failed: %r", task.exception())
