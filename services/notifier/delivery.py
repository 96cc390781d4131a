"""SMTP delivery from the `emails` outbox: claim, send over one reused connection, mark sent.

How a round works:

1. In one short transaction the sender claims due rows (`FOR UPDATE SKIP LOCKED`, so several notifier
   processes can share the queue), sets them to `sending` with the claim time, and commits.
2. Each email is decided (erased? restricted? marketing consent?), rendered, rate-limited by a token
   bucket (SMTP_RATE_PER_SECOND, per process: replicas add up) and sent over one SMTP connection that
   is kept open and reused (reconnected after a failure). The session is made ready (connect,
   STARTTLS, EHLO, AUTH, or a NOOP if the connection was idle) before step 3, holding no lock.
3. Right before its send, in a transaction of its own, the email is checked again under row locks:
   the recipient's directory entry is share-locked, then the row (the order an erasure takes them in),
   and both are read fresh. A row no longer `sending` by this claim (an erasure cancelled it) is left
   alone; a recipient erased or restricted since the claim gets nothing (suppressed).
4. Under those locks only the message's own transaction runs (MAIL FROM, RCPT, DATA; never a connect:
   a session found lost there is a relay failure, rolled back and retried after the pause below). As
   soon as the relay accepts it (250 after DATA), the row is marked `sent` and that transaction
   commits. Its locks are held across the send, so an erasure or restriction arriving meanwhile waits
   for this one message transaction (at most SMTP_TIMEOUT_SECONDS per reply) instead of overtaking it,
   and never for a relay that is slow to connect or log in.

A round keeps inside its lease (EMAIL_LEASE_SECONDS), however slow the relay or the consent check: it
starts no email after half the lease has passed since the claim and hands the untried rest back to the
queue, and a send still running at 80% of the lease is cut (and retried), so every row is marked or
handed back before the maintenance loop could take it for abandoned and queue it again. Should a row
still have been retaken by the time it is marked `sent` (only if the `sent` commit failed and was
retried without the locks), that is logged and counted in `privacy_emails_sent_unmarked_total`.

On shutdown (the runtime cancels the round) the email in flight is let finish, send and `sent` commit,
for up to SHUTDOWN_GRACE_SECONDS; then the untried rest is handed back.

Failures: a 4xx reply to an email is temporary: the row goes back to `queued` with exponential backoff
and jitter (EMAIL_RETRY_BASE_SECONDS doubling up to EMAIL_RETRY_MAX_SECONDS) until
EMAIL_GIVE_UP_AFTER_SECONDS. The backoff only says when it may be tried again: it keeps its place in the
queue (claimed by when it was queued), so once due it goes before the emails queued after it. A failure
of the relay itself (unreachable, TLS, a refused EHLO/HELO or login such as 535 for a wrong password, a
refused MAIL FROM such as 530 "STARTTLS first", a dropped connection) is no email's fault, whatever its
code: the process pauses sending with that backoff (by the relay's failures in a row), reopens the
connection after it, and logs a warning. The emails stay due meanwhile (no backoff of their own), so
`privacy_email_oldest_due_seconds` keeps growing through an outage however long the pauses get. Only a
5xx refusal of the recipient (RCPT) or of the message (after DATA), or a message that can never be
rendered, is permanent: the row becomes `failed` and an audit entry records it. No row is ever deleted,
so nothing is lost.

The crash window (the only way an email can be sent twice): an email is marked `sent` only after the
relay accepted it, so a crash can never lose one. If the process dies *after* the relay accepted the
message and *before* the `sent` commit of step 4, the row stays in `sending`; once its lease
(EMAIL_LEASE_SECONDS, default 60 s) has expired it is claimed again and sent a second time. That window
is measured by the histogram `privacy_email_unconfirmed_seconds` (typically around a millisecond), and
a failed `sent` commit is retried until the lease ends before the row is left to it. (The other,
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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from enum import Enum
from typing import Any

import aiosmtplib
import asyncpg
from asyncpg.transaction import Transaction

from privacy_runtime import metrics
from privacy_runtime.crypto import DecryptionFailed
from privacy_runtime.db import TRANSIENT_DB_ERRORS
from privacy_runtime.logs import scrub
from privacy_runtime.tokens import MANAGE, UNSUBSCRIBE, TokenSigner
from privacy_runtime.unit_of_work import Runtime, UnitOfWork
from services.notifier import rules, store, templates
from services.notifier.consent_client import ConsentDecisions
from services.notifier.final_notices import FINAL_TEMPLATES, FinalNoticeKeys
from services.notifier.intake import erased_among, params_field
from services.notifier.settings import NotifierSettings
from services.notifier.wakeups import Wakeups

log = logging.getLogger(__name__)

#: An SMTP connection idle longer than this is checked with NOOP before use.
IDLE_CHECK_SECONDS = 15.0
#: On cancellation, how long the email in flight may take to be sent and marked before it is given up
#: (and left to its lease).
SHUTDOWN_GRACE_SECONDS = 5.0


class Outcome(Enum):
    """What the round does after one email."""

    NEXT = "next"
    CONNECTION_LOST = "connection_lost"  # the relay failed: hand the rest back and pause sending
    OUT_OF_TIME = "out_of_time"  # the send was cut at the lease's deadline: hand the rest back


class Mailer:
    """One SMTP connection, opened on first use, reused for every message, reopened after a failure.

    Setting up the session (`ready`: connect, STARTTLS, EHLO, AUTH, or a NOOP on an idle connection)
    and a message's transaction on it (`transmit`: MAIL FROM, RCPT, DATA) are separate, so the sender
    can do the first, which may take as long as a slow relay likes, before it takes its row locks."""

    def __init__(self, settings: NotifierSettings):
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def ready(self) -> None:
        """Have a session open and usable; raises RelaySessionFailed if it cannot be set up."""
        await self._connection()

    async def _connection(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                await client.noop()
            except BaseException as exc:
                await self.reset()
                if not isinstance(exc, Exception):
                    raise
                client = None
            else:
                self._last_used = time.monotonic()
        if client is None or not client.is_connected:
            s = self.settings
            client = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                use_tls=s.smtp_use_tls,
                start_tls=None if s.smtp_use_tls else s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            )
            try:
                await client.connect()  # connects, and STARTTLS and AUTH (with their EHLO) if configured
                await _greet(client)  # else EHLO now, not in the first sendmail under the row locks
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    client.close()
                if not isinstance(exc, Exception):
                    raise
                # Whatever the reply (a 535 for a wrong password is a 5xx), it is the relay's, not an email's.
                raise rules.RelaySessionFailed(type(exc).__name__) from exc
            self._client = client
            self._last_used = time.monotonic()
        return client

    async def send(self, message: bytes, sender: str, recipient: str) -> None:
        """Set the session up if need be, then send (for callers that hold no locks)."""
        await self.ready()
        await self.transmit(message, sender, recipient)

    async def transmit(self, message: bytes, sender: str, recipient: str) -> None:
        """Send one message on the session `ready` opened. Never connects: a session lost since is
        SMTPServerDisconnected (the relay's failure), and the next `ready` opens a new one."""
        client = self._client
        if client is None or not client.is_connected:
            await self.reset()
            raise aiosmtplib.SMTPServerDisconnected("the SMTP session was lost before the send")
        options = ["SMTPUTF8"] if rules.needs_smtputf8(sender, recipient) else None
        try:
            await client.sendmail(sender, [recipient], message, mail_options=options)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError):
            await self.reset()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if rules.classify(exc)[0] is rules.Failure.CONNECTION:  # 421, or the session itself refused
                await self.reset()
            raise
        except asyncio.CancelledError:  # cut mid-conversation: the connection's state is unknown
            await self.reset()
            raise
        finally:
            self._last_used = time.monotonic()

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) unless the session has already done it, as `sendmail` would."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


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


class Sender:
    def __init__(self, runtime: Runtime, settings: NotifierSettings, wakeups: Wakeups, consent: ConsentDecisions):
        self.runtime = runtime
        self.keyring = runtime.keyring
        self.settings = settings
        self.wakeups = wakeups
        self.consent = consent
        self.mailer = Mailer(settings)
        self.bucket = rules.TokenBucket(settings.smtp_rate_per_second)
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
        #: Loop time before which no round starts: the relay failed (see _failed_attempt).
        self._paused_until = 0.0
        self.final_keys = FinalNoticeKeys(settings.master_key(), settings.previous_master_key())
        if problem := settings.timeouts_beyond_lease():
            log.warning("%s", problem)

    # --- loops -------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                if (pause := self._paused_until - loop.time()) > 0:
                    await asyncio.sleep(pause)  # not cut short by new emails: the relay is the problem
                try:
                    claimed = await self.send_round()
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
            await self.mailer.close()
            await self.consent.close()

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
        """Claim a batch and work through it; returns how many rows were claimed."""
        loop = asyncio.get_running_loop()
        # Taken before the claim: the rows' claimed_at (the lease's start) is a little later than this.
        deadlines = rules.round_deadlines(loop.time(), self.settings.email_lease_seconds)
        async with self.runtime.transaction() as tx:  # the runtime's: it settles keys loaded in it
            rows = await store.claim_due(tx.conn, self.batch_size)
            if not rows:
                return 0
            batch = await self._prepare(tx, rows)
        async with self.runtime.pool.acquire() as conn:
            pending = list(batch)
            in_flight: asyncio.Future[Outcome] | None = None
            try:
                while pending:
                    if loop.time() >= deadlines.take_new_until:
                        await self._release(conn, pending, 0.0, "not tried: half the lease had passed")
                        break
                    item = pending.pop(0)
                    # Shielded: a cancellation (shutdown) must not cut a send between the relay's 250
                    # and the `sent` commit.
                    in_flight = asyncio.ensure_future(self._deliver(conn, item, deadlines))
                    outcome = await asyncio.shield(in_flight)
                    in_flight = None
                    if outcome is Outcome.CONNECTION_LOST:
                        # Still due: they go as soon as the relay is back, and their wait shows.
                        await self._release(conn, pending, 0.0, "not tried: the SMTP relay is failing")
                        break
                    if outcome is Outcome.OUT_OF_TIME:
                        await self._release(conn, pending, 0.0, "not tried: the lease's deadline had passed")
                        break
            except asyncio.CancelledError:
                # Shutting down: finish the email in flight, then hand back what was not tried.
                if in_flight is not None:
                    await _finish(in_flight, SHUTDOWN_GRACE_SECONDS)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._release(conn, pending, 0.0, "not tried: shutting down"), 2.0)
                raise
        return len(rows)

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

    async def _deliver(self, conn: asyncpg.Connection, item: Claimed, deadlines: rules.RoundDeadlines) -> Outcome:
        """Decide, render and send one email; the consent check, rate wait and SMTP send are cut at
        `deadlines.send_by`."""
        row = item.row
        if item.problem is not None:
            await self._fail(item, item.problem)
            return Outcome.NEXT
        now = datetime.now(UTC)
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
            message = self._message(item, item.recipient, now)
        except (templates.TemplateProblem, rules.InvalidAddress) as exc:
            await self._fail(item, f"cannot compose: {exc}")
            return Outcome.NEXT
        wait = self.bucket.reserve()
        started: float | None = None
        refusal: str | None = None
        cut = asyncio.timeout_at(deadlines.send_by)
        # Held from the re-check across the send to the `sent` commit (see the module's docstring).
        locked = conn.transaction()
        try:
            async with cut:
                if wait > 0:
                    await asyncio.sleep(wait)
                # The session is set up before the locks are taken: however long the relay takes to
                # greet or log us in, nobody waits for it. Under the locks only MAIL/RCPT/DATA run, and
                # a session lost meanwhile is not reopened there (a relay failure: rolled back, retried).
                await self.mailer.ready()
                await locked.start()
                current = await store.lock_for_sending(conn, item.notification_id, row["claimed_at"])
                refusal = (rules.NOT_CLAIMED if current is None
                           else rules.recheck(item.template, params=item.params, **dict(current)))
                if refusal is None:
                    started = time.perf_counter()
                    await self.mailer.transmit(message, self.envelope_from, item.recipient.email)
        except BaseException as exc:
            await _rollback(locked)
            if not isinstance(exc, Exception):
                raise
            if cut.expired():
                # Not a relay failure: no backoff, and an attempt only if the relay was being talked to.
                await store.mark_retry(
                    conn,
                    item.notification_id,
                    row["claimed_at"],
                    0.0,
                    "send cut at the lease's deadline",
                    count_attempt=started is not None,
                )
                log.warning(
                    "email %s: send cut at %.0f%% of the lease; retried", item.notification_id, 100 * rules.SEND_BY
                )
                return Outcome.OUT_OF_TIME
            kind, description = rules.classify(exc)
            await self._failed_attempt(conn, item, kind, scrub(description))
            return Outcome.CONNECTION_LOST if kind is rules.Failure.CONNECTION else Outcome.NEXT
        if refusal is not None:
            await self._refused_at_the_last_moment(conn, locked, item, refusal)
            return Outcome.NEXT
        assert started is not None
        accepted = time.perf_counter()
        metrics.EMAIL_SEND_SECONDS.observe(accepted - started)
        self._connection_failures = 0
        await self._confirm_sent(conn, locked, item, deadlines.lease_ends)
        metrics.EMAIL_UNCONFIRMED_SECONDS.observe(time.perf_counter() - accepted)
        if item.template in FINAL_TEMPLATES:  # the last email went (an erase may have raced it): shred
            await store.delete_final_notice(conn, item.row["subject"])
        metrics.EMAILS_SENT.labels(template=item.template).inc()
        return Outcome.NEXT

    async def _refused_at_the_last_moment(
        self, conn: asyncpg.Connection, locked: Transaction, item: Claimed, reason: str
    ) -> None:
        """The re-check said no: an erasure or restriction came after the claim."""
        try:
            if reason == rules.NOT_CLAIMED:  # already suppressed by the erasure, or another claim's now
                await locked.rollback()
                log.info("email %s: no longer this claim's at the send; not sent", item.notification_id)
                return
            done = await store.mark_final(
                conn, item.notification_id, item.row["claimed_at"], rules.Status.SUPPRESSED, reason
            )
            await locked.commit()
        except BaseException:
            await _rollback(locked)
            raise
        if done:
            metrics.EMAILS_SUPPRESSED.labels(reason=reason).inc()
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
        rendered = templates.render(item.template, locale, item.params, context)
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

    async def _confirm_sent(
        self, conn: asyncpg.Connection, locked: Transaction, item: Claimed, lease_ends: float
    ) -> None:
        """Commit `sent` in the transaction holding the row locks; if the database hiccups, keep trying
        on a fresh connection until the lease ends (the crash window)."""
        try:
            marked = await store.mark_sent(conn, item.notification_id, item.row["claimed_at"])
            await locked.commit()
        except TRANSIENT_DB_ERRORS:
            await _rollback(locked)
            marked = await self._mark_sent_again(conn, item, lease_ends)
        except BaseException:
            await _rollback(locked)
            raise
        if not marked:
            # Retaken after its lease (another send may follow) or cancelled by an erasure while the
            # locks were lost to a database failure.
            metrics.EMAILS_SENT_UNMARKED.inc()
            log.warning(
                "email %s was accepted by the relay but its row was no longer this claim's "
                "(lease expired or cancelled); it may be sent again",
                item.notification_id,
            )

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


async def _rollback(transaction: Transaction) -> None:
    """End a transaction that may not have begun, or whose connection broke (then it is gone anyway)."""
    with contextlib.suppress(Exception):
        await transaction.rollback()


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
