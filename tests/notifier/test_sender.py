"""The sender in-process against a real PostgreSQL and a scripted SMTP server (aiosmtpd).

The e2e tests cover the happy path and 4xx/outage through the real sink; here the relay answers per
recipient (250, 451 or 550) so permanent failures, their audit entries and the lease guard can be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP
from prometheus_client import REGISTRY
from pydantic import SecretStr

from devstack.stack import Stack
from privacy_runtime.tokens import MANAGE, MANAGE_MAX_AGE_SECONDS, UNSUBSCRIBE, InvalidToken, TokenSigner
from services.notifier import store
from services.notifier.consent_client import ConsentDecisions
from services.notifier.delivery import Sender
from services.notifier.downstream import notifier_actions
from services.notifier.intake import Intake, Request
from services.notifier.wakeups import Wakeups
from tests.helpers import free_port
from tests.notifier.support import Runtime, fill_directory, scratch_runtime, sender_for
from tests.notifier.test_relay_session import AUTH, Scripted
from tests.notifier.test_relay_session import relay as scripted_relay

pytestmark = pytest.mark.stack


GREETING_HOLD_LIMIT = 20.0


@dataclass
class Relay:
    """Answers RCPT by the local part's prefix: `bounce` 550, `later` 451, anything else 250. While
    `hold` is set to an unset event, DATA is answered only once it is set (`arrived` says it came);
    while `hold_greeting` is, EHLO is (`greeted` says it came), for at most GREETING_HOLD_LIMIT seconds."""

    port: int
    received: list[tuple[str, EmailMessage]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hold_greeting: asyncio.Event | None = None
    greeted: asyncio.Event = field(default_factory=asyncio.Event)
    ehlos: int = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.ehlos += 1
        self.greeted.set()
        if self.hold_greeting is not None:
            with contextlib.suppress(TimeoutError):  # a test that forgot to let go cannot hang the relay
                await asyncio.wait_for(self.hold_greeting.wait(), GREETING_HOLD_LIMIT)
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 <" + address + ">: no such user"
        if address.startswith("later"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=email.policy.default).parsebytes(envelope.original_content or envelope.content)
        assert isinstance(msg, EmailMessage)
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, msg))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return "250 accepted"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay(free_port())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(relay, hostname="relay.test"), "127.0.0.1", relay.port)
    try:
        yield relay
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def sending(stack: Stack, relay: Relay) -> AsyncIterator[Runtime]:
    async with scratch_runtime(
        stack.env()["DATABASE_URL"],
        smtp_host="127.0.0.1",
        smtp_port=relay.port,
        smtp_starttls=False,
        email_retry_base_seconds=60,
        consent_base_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: no answer, so no marketing yet
    ) as runtime:
        yield runtime


async def send_one_round(runtime: Runtime) -> int:
    """One sending round by a sender of its own; returns how many emails it took."""
    sender = sender_for(runtime)
    try:
        return await sender.send_round()
    finally:
        await sender.mailer.close()
        await sender.consent.close()


async def queue(
    runtime: Runtime,
    subject: str,
    template: str = "verification_code",
    category: str = "transactional",
    params: dict[str, Any] | None = None,
) -> str:
    nid = f"test:{subject}:{template}:{uuid.uuid4().hex[:6]}"
    async with runtime.transaction() as tx:
        await Intake(runtime, runtime.settings).queue(tx,
            [
                Request(
                    notification_id=nid,
                    subject=subject,
                    template=template,
                    category=category,
                    locale="en",
                    params=params if params is not None else {"code": "424242", "expires_minutes": 10},
                    origin="test",
                )
            ],
        )
    return nid


async def row(runtime: Runtime, nid: str) -> Any:
    async with runtime.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM emails WHERE notification_id = $1", nid)


async def test_accepted_refused_and_bounced_emails(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-1", "later-1", "bounce-1"], domain="relay.example")
    ok, later, bounce = [await queue(sending, s) for s in ("ok-1", "later-1", "bounce-1")]
    assert await send_one_round(sending) == 3

    sent = await row(sending, ok)
    assert sent["status"] == "sent" and sent["sent_at"] is not None and sent["attempts"] == 1
    assert [rcpt for rcpt, _ in relay.received] == ["ok-1@relay.example"]
    msg = relay.received[0][1]
    assert msg["Message-ID"] == sent["message_id"]
    assert "424242" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    retry = await row(sending, later)
    assert retry["status"] == "queued" and retry["attempts"] == 1 and "451" in retry["last_error"]
    assert retry["next_attempt_at"] > retry["updated_at"], "backed off"

    failed = await row(sending, bounce)
    assert failed["status"] == "failed" and "550" in failed["last_error"]
    assert "bounce-1@relay.example" not in failed["last_error"], "no address in what is stored"
    assert failed["params_sealed"] is None
    async with sending.pool.acquire() as conn:
        audit = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'email_failed'")
    assert audit["subject"] == "bounce-1" and audit["ref"] == bounce
    assert json.loads(audit["detail"])["template"] == "verification_code"


async def test_a_refusal_inside_a_group_stops_it_and_the_rest_still_go_in_the_round(
    sending: Runtime, relay: Relay
) -> None:
    """One lane, one group of five: the 550 and the 451 each end the group they are in. What the relay
    accepted before them is marked, and the emails after them go in the same round, each once."""
    subjects = ["ok-g1", "bounce-g2", "ok-g3", "later-g4", "ok-g5"]
    await fill_directory(sending, subjects, domain="relay.example")
    ids = {s: await queue(sending, s) for s in subjects}
    sender = sender_for(sending)
    assert sender.settings.emails_per_send_transaction >= len(subjects), "one group, were it not for the refusals"
    try:
        assert await sender.send_round() == 5
    finally:
        await sender.mailer.close()
    assert [rcpt for rcpt, _ in relay.received] == ["ok-g1@relay.example", "ok-g3@relay.example",
                                                     "ok-g5@relay.example"]
    states = {s: (await row(sending, nid))["status"] for s, nid in ids.items()}
    assert states == {"ok-g1": "sent", "bounce-g2": "failed", "ok-g3": "sent", "later-g4": "queued", "ok-g5": "sent"}
    assert (await row(sending, ids["later-g4"]))["attempts"] == 1


async def test_a_session_lost_inside_a_group_marks_what_went_and_hands_back_the_rest(
    sending: Runtime, relay: Relay
) -> None:
    """The relay's session drops before the third email of a group of four: the two it accepted are
    marked sent (never sent again), the third is a relay failure (due again, its attempt counted),
    the fourth goes back untried; the next round sends those two, once each."""
    subjects = [f"ok-drop-{i}" for i in range(4)]
    await fill_directory(sending, subjects, domain="relay.example")
    ids = [await queue(sending, s) for s in subjects]
    sender = sender_for(sending)
    transmit = sender.mailer.transmit
    calls = 0

    async def dropping_before_the_third(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            assert sender.mailer._client is not None
            sender.mailer._client.close()
        await transmit(*args)

    sender.mailer.transmit = dropping_before_the_third  # type: ignore[method-assign]
    try:
        assert await asyncio.wait_for(sender.send_round(), 20) == 4
        rows = [await row(sending, nid) for nid in ids]
        assert [r["status"] for r in rows] == ["sent", "sent", "queued", "queued"]
        assert [r["attempts"] for r in rows[2:]] == [1, 0], "the failing one counted, the untried one not"
        assert [rcpt for rcpt, _ in relay.received] == [f"{s}@relay.example" for s in subjects[:2]]
        sender.mailer.transmit = transmit  # type: ignore[method-assign]
        sender._paused_until = 0.0
        assert await asyncio.wait_for(sender.send_round(), 20) == 2
    finally:
        await sender.mailer.close()
    assert [(await row(sending, nid))["status"] for nid in ids] == ["sent"] * 4
    assert sorted(rcpt for rcpt, _ in relay.received) == sorted(f"{s}@relay.example" for s in subjects)


async def test_one_connection_is_reused_for_a_batch(sending: Runtime, relay: Relay) -> None:
    subjects = [f"ok-{i}" for i in range(20)]
    await fill_directory(sending, subjects, domain="relay.example")
    for subject in subjects:
        await queue(sending, subject)
    sender = sender_for(sending)
    connects = 0
    original = sender.mailer._connection

    async def counting() -> Any:
        nonlocal connects
        before = sender.mailer._client
        client = await original()
        connects += client is not before
        return client

    sender.mailer._connection = counting  # type: ignore[method-assign]
    try:
        assert await sender.send_round() == 20
    finally:
        await sender.mailer.close()
    assert len(relay.received) == 20 and connects == 1


async def test_marketing_without_consent_and_restricted_subjects_are_suppressed(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-m"], domain="relay.example")
    await fill_directory(sending, ["ok-r"], domain="relay.example", restricted=True)
    policy = {
        "version": "2",
        "effective_date": "2026-01-01",
        "summary_sv": "Ny",
        "summary_en": "New",
        "url": "https://isopartner.se/p",
    }
    marketing = await queue(sending, "ok-m", "policy_changed", "marketing", policy)
    notice = await queue(sending, "ok-r", "policy_changed", "transactional", policy)
    rights = await queue(sending, "ok-r")  # a rights-request notice still goes to a restricted subject
    await send_one_round(sending)
    waiting = await row(sending, marketing)  # the consent service did not answer: asked again later
    assert (waiting["status"], waiting["last_error"]) == ("queued", "consent decision unavailable")
    assert (await row(sending, notice))["last_error"] == "restricted"
    assert (await row(sending, rights))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-r@relay.example"]


async def test_marketing_goes_only_on_the_consent_services_yes(sending: Runtime, relay: Relay) -> None:
    """A stand-in decision API: yes for one subject, no for another, 503 for a third (asked again later)."""
    answers = {"mk-yes": (200, True), "mk-no": (200, False), "mk-down": (503, None)}

    async def decisions(request: web.Request) -> web.Response:
        status, allowed = answers[request.query["subject"]]
        return web.json_response({"allowed": allowed} if allowed is not None else {"error": "x"}, status=status)

    api = web.Application()
    api.router.add_get("/v1/decisions", decisions)
    runner = web.AppRunner(api)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await fill_directory(sending, list(answers), domain="relay.example")
        policy = {"version": "3", "effective_date": "2026-01-01", "summary_sv": "Ny", "summary_en": "New",
                  "url": "https://isopartner.se/p"}
        ids = {s: await queue(sending, s, "policy_changed", "marketing", policy) for s in answers}
        sender = Sender(sending, sending.settings, Wakeups(sending.settings.database_url),
                        ConsentDecisions(f"http://127.0.0.1:{port}", 0.5))
        try:
            await sender.send_round()
        finally:
            await sender.mailer.close()
            await sender.consent.close()
    finally:
        await runner.cleanup()
    assert [rcpt for rcpt, _ in relay.received] == ["mk-yes@relay.example"]
    assert (await row(sending, ids["mk-no"]))["last_error"] == "no_consent"
    down = await row(sending, ids["mk-down"])
    assert (down["status"], down["last_error"]) == ("queued", "consent decision unavailable")


async def test_unknown_recipient_waits_and_erased_subject_gets_nothing(sending: Runtime, relay: Relay) -> None:
    waiting = await queue(sending, "ok-unknown")
    await fill_directory(sending, ["ok-gone"], domain="relay.example")
    async with sending.transaction() as tx:
        await tx.keys.shred_subject("ok-gone")
        await store.delete_recipient(tx.conn, "ok-gone")
    erased = await queue(sending, "ok-gone")
    assert (await row(sending, erased))["status"] == "suppressed", "refused at intake"
    await send_one_round(sending)
    deferred = await row(sending, waiting)
    assert deferred["status"] == "queued" and "not in the directory" in deferred["last_error"]
    assert relay.received == []


async def test_a_retaken_row_is_not_marked_by_its_old_claim(sending: Runtime) -> None:
    """The lease guard: once a row was retaken, the first claim can no longer mark it, whether by
    `mark_sent` or by the statement that rides on the send's COMMIT (its values inlined: the claim
    time to the microsecond, the id hex-encoded, so no id can end its literal)."""
    await fill_directory(sending, ["ok-lease"], domain="relay.example")
    nid = await queue(sending, "ok-lease")
    async with sending.pool.acquire() as conn:
        first = (await store.claim_due(conn, 10))[0]
        await asyncio.sleep(0.01)
        assert await store.release_expired_leases(conn, 0.0) == [nid]
        second = (await store.claim_due(conn, 10))[0]
        assert second["attempts"] == 2
        assert not await store.mark_sent(conn, nid, first["claimed_at"])
        assert await conn.execute(store.mark_sent_statement([(nid, first["claimed_at"])])) == "UPDATE 0"
        undone = conn.transaction()
        await undone.start()
        assert await store.mark_sent(conn, nid, second["claimed_at"])
        await undone.rollback()
        hostile = "x'); DELETE FROM emails; --"
        assert await conn.execute(store.mark_sent_statement([(hostile, second["claimed_at"])])) == "UPDATE 0"
        assert await conn.execute(store.mark_sent_statement([(hostile, second["claimed_at"]), (nid, second["claimed_at"])])) == "UPDATE 1"
        assert (await row(sending, nid))["status"] == "sent"
        assert await conn.fetchval("SELECT count(*) FROM emails") == 1


async def test_a_notice_to_one_person_goes_before_a_fanned_out_notice(sending: Runtime) -> None:
    subjects = await fill_directory(sending, [f"ok-{i:02d}" for i in range(5)], domain="relay.example")
    async with sending.transaction() as tx:
        await tx.keys.ensure_keys(set(subjects))
        await store.insert_emails(
            tx.conn,
            [
                store.EmailRow(
                    notification_id=f"bulk:{s}",
                    subject=s,
                    template="merger_notice",
                    category="transactional",
                    locale=None,
                    params_sealed=None,
                    message_id=f"<{s}@x>",
                    origin="bulk",
                    priority=1,
                )
                for s in subjects
            ],
        )
    code = await queue(sending, "ok-00")  # queued after the bulk rows
    async with sending.pool.acquire() as conn:
        first = await store.claim_due(conn, 1)
    assert [r["notification_id"] for r in first] == [code]


# --- the erasure confirmation -------------------------------------------------------------------------


@dataclass(frozen=True)
class EraseCommand:
    command_id: uuid.UUID
    request_id: uuid.UUID | None


async def erase(runtime: Runtime, subject: str, request_id: uuid.UUID | None) -> str:
    action = notifier_actions(runtime.settings)["erase"]
    async with runtime.transaction() as tx:
        outcome = await action(tx, subject, EraseCommand(uuid.uuid4(), request_id))
        for step in outcome.after_ack:
            await step(tx)
    return outcome.status


def completed(request_id: uuid.UUID) -> dict[str, Any]:
    return {"request_id": str(request_id), "retained": [{"system": "billing", "basis": "Bokföringslagen 7:2"}]}


async def finals_left(runtime: Runtime) -> int:
    async with runtime.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM final_notices"))


async def test_erasure_confirmation_queued_before_the_erase_still_goes(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-e1", "ok-e1b"], domain="relay.example")
    request_id = uuid.uuid4()
    confirmation = await queue(sending, "ok-e1", "erasure_completed", params=completed(request_id))
    other = await queue(sending, "ok-e1")  # anything else queued is cancelled by the erasure
    assert await erase(sending, "ok-e1", request_id) == "done"
    async with sending.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM recipients WHERE subject = 'ok-e1'") == 0
        assert await conn.fetchval("SELECT count(*) FROM subject_keys WHERE subject = 'ok-e1'") == 0
    assert (await row(sending, other))["status"] == "suppressed"
    await send_one_round(sending)
    assert (await row(sending, confirmation))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-e1@relay.example"]
    assert "Bokföringslagen 7:2" in relay.received[0][1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "/manage/" not in relay.received[0][1].as_string(), "nothing left to manage for an erased person"
    assert await finals_left(sending) == 0, "the kept address is shredded once the confirmation went"


async def test_erasure_confirmation_arriving_after_the_erase_still_goes_but_nothing_else(
    sending: Runtime, relay: Relay
) -> None:
    await fill_directory(sending, ["ok-e2"], domain="relay.example")
    request_id = uuid.uuid4()
    assert await erase(sending, "ok-e2", request_id) == "done"
    assert await finals_left(sending) == 1
    other_request = await queue(sending, "ok-e2", "erasure_completed", params=completed(uuid.uuid4()))
    code = await queue(sending, "ok-e2")
    confirmation = await queue(sending, "ok-e2", "erasure_completed", params=completed(request_id))
    assert (await row(sending, other_request))["status"] == "suppressed", "only the erasing request's own"
    assert (await row(sending, code))["status"] == "suppressed"
    assert (await row(sending, confirmation))["final_notice"] is True
    await send_one_round(sending)
    assert (await row(sending, confirmation))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-e2@relay.example"]
    assert await finals_left(sending) == 0


async def test_a_final_notice_whose_key_does_not_open_fails_alone(sending: Runtime, relay: Relay) -> None:
    """E.g. the previous master key removed before the rotation moved it: that email is recorded as
    failed, and the rest of the queue still goes (a failing batch would be claimed again forever)."""
    await fill_directory(sending, ["ok-e4", "ok-e5"], domain="relay.example")
    request_id = uuid.uuid4()
    confirmation = await queue(sending, "ok-e4", "erasure_completed", params=completed(request_id))
    assert await erase(sending, "ok-e4", request_id) == "done"
    async with sending.pool.acquire() as conn:
        await conn.execute("UPDATE final_notices SET master_key_id = 'gone' WHERE subject = 'ok-e4'")
    other = await queue(sending, "ok-e5")
    await send_one_round(sending)
    failed = await row(sending, confirmation)
    assert failed["status"] == "failed" and "final notice" in failed["last_error"]
    assert (await row(sending, other))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-e5@relay.example"]


async def test_a_recipient_whose_entry_does_not_open_fails_alone(sending: Runtime, relay: Relay) -> None:
    """A directory entry sealed under a key that no longer opens it (a key store restored from another
    backup, say) fails that email alone; every other email still goes (a failing batch would be claimed
    again forever and hold up the whole queue)."""
    await fill_directory(sending, ["ok-e6", "ok-e7"], domain="relay.example")
    broken = await queue(sending, "ok-e6")
    async with sending.pool.acquire() as conn:
        await conn.execute("UPDATE recipients SET email_sealed = set_byte(email_sealed, 20, "
                           "get_byte(email_sealed, 20) # 255) WHERE subject = 'ok-e6'")
    other = await queue(sending, "ok-e7")
    await send_one_round(sending)
    failed = await row(sending, broken)
    assert failed["status"] == "failed" and "recipient's entry" in failed["last_error"]
    assert (await row(sending, other))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-e7@relay.example"]


async def test_an_erasure_without_a_request_keeps_no_address(sending: Runtime) -> None:
    await fill_directory(sending, ["ok-e3"], domain="relay.example")
    assert await erase(sending, "ok-e3", None) == "done"
    assert await finals_left(sending) == 0
    assert await erase(sending, "never-known", uuid.uuid4()) == "not_found"
    assert await finals_left(sending) == 0


# --- an erasure or restriction racing a claimed batch ------------------------------------------------


class RacedSender(Sender):
    """Runs `race` once, after the batch was claimed and decrypted and before its first email is sent."""

    def __init__(self, runtime: Runtime, race: Callable[[], Awaitable[None]]):
        settings = runtime.settings
        consent = ConsentDecisions(settings.consent_base_url, 0.5)
        super().__init__(runtime, settings, Wakeups(settings.database_url), consent)
        self.race: Callable[[], Awaitable[None]] | None = race

    async def _deliver(self, conn: Any, mailer: Any, group: Any, deadlines: Any, lanes: Any) -> Any:
        if self.race is not None:
            race, self.race = self.race, None
            await race()
        return await super()._deliver(conn, mailer, group, deadlines, lanes)


async def test_an_erasure_or_restriction_after_the_claim_stops_the_send(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-gone", "ok-held", "ok-stays"], domain="relay.example")
    request_id = uuid.uuid4()
    code = await queue(sending, "ok-gone")
    confirmation = await queue(sending, "ok-gone", "erasure_completed", params=completed(request_id))
    policy = {"version": "9", "effective_date": "2026-01-01", "summary_sv": "Ny", "summary_en": "New",
              "url": "https://isopartner.se/p"}
    notice = await queue(sending, "ok-held", "policy_changed", "transactional", policy)
    rights = await queue(sending, "ok-held")  # a rights-request notice still goes while restricted
    other = await queue(sending, "ok-stays")

    async def erase_and_restrict() -> None:
        assert await erase(sending, "ok-gone", request_id) == "done"
        async with sending.transaction() as tx:
            assert await store.set_restricted(tx.conn, "ok-held", True)

    sender = RacedSender(sending, erase_and_restrict)
    try:
        assert await sender.send_round() == 5
    finally:
        await sender.mailer.close()
    assert (await row(sending, code))["status"] == "suppressed"
    held = await row(sending, notice)
    assert (held["status"], held["last_error"]) == ("suppressed", "restricted")
    for sent in (confirmation, rights, other):
        assert (await row(sending, sent))["status"] == "sent"
    assert sorted(rcpt for rcpt, _ in relay.received) == [
        "ok-gone@relay.example",  # only the erasure confirmation, addressed from its final notice
        "ok-held@relay.example",
        "ok-stays@relay.example",
    ]
    (gone,) = [msg for rcpt, msg in relay.received if rcpt == "ok-gone@relay.example"]
    assert "Bokföringslagen 7:2" in gone.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_an_erasure_hold_after_the_claim_stops_all_but_the_cases_own_emails(sending: Runtime,
                                                                                  relay: Relay) -> None:
    await fill_directory(sending, ["ok-hold"], domain="relay.example")
    request_id = str(uuid.uuid4())
    policy = {"version": "9", "effective_date": "2026-01-01", "summary_sv": "Ny", "summary_en": "New",
              "url": "https://isopartner.se/p"}
    notice = await queue(sending, "ok-hold", "policy_changed", "transactional", policy)
    own = await queue(sending, "ok-hold", "request_received", params={
        "request_id": request_id, "right": "erasure", "due_date": "2027-01-01"})

    async def verified() -> None:
        async with sending.transaction() as tx:
            await store.hold_for_erasure(tx.conn, [("ok-hold", request_id)])

    sender = RacedSender(sending, verified)
    try:
        assert await sender.send_round() == 2
    finally:
        await sender.mailer.close()
    held = await row(sending, notice)
    assert (held["status"], held["last_error"]) == ("suppressed", "erasure_pending")
    assert (await row(sending, own))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-hold@relay.example"]


async def test_an_erasure_arriving_during_a_send_waits_until_it_is_marked_sent(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-inflight"], domain="relay.example")
    nid = await queue(sending, "ok-inflight")
    unmarked = REGISTRY.get_sample_value("privacy_emails_sent_unmarked_total") or 0.0
    relay.hold = asyncio.Event()
    sender = sender_for(sending)
    try:
        sending_round = asyncio.ensure_future(sender.send_round())
        await asyncio.wait_for(relay.arrived.wait(), 10)  # the relay has the message, not yet answered
        erasure = asyncio.ensure_future(erase(sending, "ok-inflight", None))
        await asyncio.sleep(0.5)
        assert not erasure.done(), "the erasure waits for the email in flight"
        relay.hold.set()
        assert await asyncio.wait_for(sending_round, 10) == 1
        assert await asyncio.wait_for(erasure, 10) == "done"
    finally:
        relay.hold.set()
        await sender.mailer.close()
    assert (await row(sending, nid))["status"] == "sent", "sent, and the erasure found it so"
    assert (REGISTRY.get_sample_value("privacy_emails_sent_unmarked_total") or 0.0) == unmarked


async def test_an_erasure_is_not_held_up_by_a_relay_slow_to_set_up_the_session(sending: Runtime, relay: Relay) -> None:
    """The session (connect, STARTTLS, EHLO, AUTH) is set up before the send takes its locks: while the
    relay takes its time over EHLO, an erasure of the recipient goes through at once (it does not wait
    for the connect), and the email, found cancelled once the locks are taken, is not sent."""
    await fill_directory(sending, ["ok-slowhello"], domain="relay.example")
    nid = await queue(sending, "ok-slowhello")
    relay.hold_greeting = asyncio.Event()
    sender = sender_for(sending)
    sending_round = asyncio.ensure_future(sender.send_round())
    try:
        await asyncio.wait_for(relay.greeted.wait(), 10)  # the sender is connecting: EHLO not answered yet
        began = time.monotonic()
        assert await asyncio.wait_for(erase(sending, "ok-slowhello", None), 3.0) == "done"
        took = time.monotonic() - began
        assert not sending_round.done() and not relay.hold_greeting.is_set(), "the connect is still going on"
        assert took < 1.0, f"the erasure took {took:.2f}s"
        relay.hold_greeting.set()
        assert await asyncio.wait_for(sending_round, 10) == 1
    finally:
        relay.hold_greeting.set()
        if not sending_round.done():
            sending_round.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sending_round, 10)
        await sender.mailer.close()
    assert (await row(sending, nid))["status"] == "suppressed"
    assert relay.received == []


async def test_a_session_lost_under_the_locks_is_not_reopened_there(sending: Runtime, relay: Relay) -> None:
    """The session drops after it was made ready and before the message: the send does not reconnect
    while holding the locks; the row goes back to the queue, due, not failed, and the next round sends
    it once."""
    await fill_directory(sending, ["ok-dropped"], domain="relay.example")
    nid = await queue(sending, "ok-dropped")
    sender = sender_for(sending)
    transmit = sender.mailer.transmit

    async def after_a_drop(*args: Any) -> None:
        assert sender.mailer._client is not None
        sender.mailer._client.close()
        await transmit(*args)

    sender.mailer.transmit = after_a_drop  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    try:
        assert await asyncio.wait_for(sender.send_round(), 20) == 1
        assert relay.ehlos == 1, "no second connection was opened under the locks"
        assert sender._paused_until > loop.time(), "a relay failure: sending pauses"
        back = await row(sending, nid)
        assert back["status"] == "queued" and back["next_attempt_at"] <= back["updated_at"]
        async with sending.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'email_failed'") == 0
        assert relay.received == []
        sender.mailer.transmit = transmit  # type: ignore[method-assign]
        assert await asyncio.wait_for(sender.send_round(), 20) == 1
    finally:
        await sender.mailer.close()
    assert (await row(sending, nid))["status"] == "sent"
    assert [rcpt for rcpt, _ in relay.received] == ["ok-dropped@relay.example"]
    assert relay.ehlos == 2


# --- a failing relay -----------------------------------------------------------------------------


async def test_a_relay_refusing_the_login_pauses_sending_and_keeps_every_email_due(stack: Any) -> None:
    """535 for a wrong password: no email fails for it, the sender pauses, and the emails stay due (so
    the age of the oldest one due shows the outage however long it lasts)."""
    async with (
        scripted_relay(Scripted(), **AUTH) as port,
        scratch_runtime(
            stack.env()["DATABASE_URL"],
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_username="notifier",
            smtp_password=SecretStr("wrong"),
            email_retry_base_seconds=60,
        ) as runtime,
    ):
        subjects = await fill_directory(runtime, [f"auth-{i}" for i in range(3)], domain="relay.example")
        ids = [await queue(runtime, s) for s in subjects]
        sender = sender_for(runtime)
        loop = asyncio.get_running_loop()
        try:
            assert await sender.send_round() == 3
        finally:
            await sender.mailer.close()
        assert sender._paused_until - loop.time() > 25, "paused with the backoff (30 to 60 s at first)"
        async with runtime.pool.acquire() as conn:
            states = await conn.fetch(
                "SELECT status, next_attempt_at <= now() AS due FROM emails WHERE notification_id = ANY($1)", ids
            )
            assert [(r["status"], r["due"]) for r in states] == [("queued", True)] * 3
            assert set(await store.oldest_due(conn)) == {0}
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'email_failed'") == 0


async def test_every_email_links_to_manage_your_privacy_signed_for_its_recipient(sending: Runtime, relay: Relay) -> None:
    await fill_directory(sending, ["ok-m1"], domain="relay.example")
    request_id = str(uuid.uuid4())
    await queue(sending, "ok-m1", params={"code": "424242", "expires_minutes": 10, "request_id": request_id})
    sender = sender_for(sending)
    try:
        assert await sender.send_round() == 1
    finally:
        await sender.mailer.close()
    text = relay.received[0][1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    base = sending.settings.privacy_center_url.rstrip("/")
    assert f"{base}/verify/{request_id}" in text, "the code email links to where the code is typed"
    found = re.search(re.escape(base) + r"/manage/(\S+)", text)
    assert found, text
    signer = TokenSigner(sending.settings.master_key(), MANAGE)
    assert signer.verify(found.group(1), max_age_seconds=MANAGE_MAX_AGE_SECONDS) == {"s": "ok-m1"}
    with pytest.raises(InvalidToken):  # an unsubscribe token is no manage token, nor the reverse
        TokenSigner(sending.settings.master_key(), UNSUBSCRIBE).verify(found.group(1))
