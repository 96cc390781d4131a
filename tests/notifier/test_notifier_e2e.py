"""Notifier end to end: real Kafka, PostgreSQL and SMTP sink, the service as a real process.

Every test uses its own recipient domain, so it counts only its own `.eml` files (the sink names each
file after its recipient). Fan-outs reach the whole directory, so the big fan-out runs last.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from devstack.stack import Stack
from privacy_runtime.tokens import UNSUBSCRIBE, TokenSigner
from schemas.events import (
    ConsentGrant,
    LegalDisclosure,
    MergerNotice,
    NotificationRequested,
    PolicyChanged,
    PrivacyCommand,
    UserRegistered,
)
from schemas.topics import (
    LEGAL_DISCLOSURE,
    MERGER_NOTICE,
    NOTIFICATION_REQUESTED,
    POLICY_CHANGED,
    PRIVACY_ACKS,
    USER_REGISTERED,
    command_topic,
    dlq_topic,
)
from tests.helpers import (
    TEST_ADMIN_TOKEN,
    TEST_MASTER_KEY,
    Outgoing,
    ServiceProcess,
    event_of,
    free_port,
    get_json,
    header,
    publish,
    publish_many,
    publish_raw,
    wait_for_messages,
    wait_until,
)

pytestmark = pytest.mark.stack

#: Subjects whose prefix starts with this get a yes from the fake consent decision API.
MARKETING_YES = "mkyes"


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def consent_api() -> AsyncIterator[str]:
    """A stand-in for the consent service's decision API: yes for `mkyes-*`, 404 otherwise."""

    async def decisions(request: web.Request) -> web.Response:
        subject = request.query.get("subject", "")
        if request.query.get("purpose") == "marketing_email" and subject.startswith(MARKETING_YES):
            return web.json_response({"allowed": True, "basis": "consent", "reason": "test"})
        return web.json_response({"error": "unknown subject"}, status=404)

    app = web.Application()
    app.router.add_get("/v1/decisions", decisions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def notifier(stack: Stack, consent_api: str) -> AsyncIterator[ServiceProcess]:
    async with ServiceProcess(
        "notifier",
        stack.env(),
        {
            "CONSENT_BASE_URL": consent_api,
            "CONSENT_PUBLIC_URL": "https://consent.test",
            "EMAIL_RETRY_BASE_SECONDS": "0.2",
            "EMAIL_RETRY_MAX_SECONDS": "1",
            "EMAIL_IDLE_POLL_SECONDS": "0.2",
            "EMAIL_LEASE_SECONDS": "4",  # so the crash test sees abandoned rows retaken quickly
            # One sending lane, one email per transaction: the crash test allows the one email in flight
            # per crash to arrive twice (several lanes and groups: tests/notifier/test_lanes.py).
            "SMTP_CONNECTIONS": "1",
            "EMAILS_PER_SEND_TRANSACTION": "1",
            # Fan-outs walk the directory in many pages, so a crash can land between two of them.
            "FANOUT_PAGE_SIZE": "100",
        },
    ).running() as service:
        yield service


# --- helpers -----------------------------------------------------------------------------------------


def new_domain(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}.example"


def mail_files(stack: Any, domain: str) -> list[Path]:  # the sink names files after the recipient
    return sorted(Path(stack.endpoints.mail_dir).glob(f"*@{domain}.eml"))


def parse(path: Path) -> EmailMessage:
    with open(path, "rb") as fh:
        msg = BytesParser(policy=email.policy.default).parse(fh)
    assert isinstance(msg, EmailMessage)
    return msg


def local_parts(files: list[Path]) -> Counter[str]:
    """Recipients' local parts, from the file names (`<ns>-<seq>-<rand>-<recipient>.eml`)."""
    return Counter(p.name.split("-", 3)[3].rsplit("@", 1)[0] for p in files)


async def wait_for_mail(stack: Any, domain: str, count: int, timeout: float = 60.0) -> list[Path]:
    async def arrived() -> list[Path]:
        files = mail_files(stack, domain)
        return files if len(files) >= count else []

    interval = 0.1 if count < 100 else 0.5  # listing a big mail dir costs CPU the service needs
    return await wait_until(arrived, timeout=timeout, interval=interval, what=f"{count} emails to @{domain}")


async def register(
    bootstrap: str,
    db: asyncpg.Connection,
    subjects: list[str],
    domain: str,
    *,
    opted_out: Collection[str] = (),
    locale: str = "sv",
) -> None:
    """Publish registrations and wait until every one is in the notifier's directory."""
    await publish_many(
        bootstrap,
        USER_REGISTERED,
        [
            Outgoing(
                UserRegistered(
                    email=f"{s}@{domain}",
                    name=f"Person {s[-4:]}",
                    locale=locale,
                    country="SE",
                    consents=[ConsentGrant(purpose="marketing_email", granted=s not in opted_out)],
                ),
                subject=s,
            )
            for s in subjects
        ],
    )

    async def in_directory() -> bool:
        found = await db.fetchval("SELECT count(*) FROM recipients WHERE subject = ANY($1::text[])", subjects)
        return found == len(subjects)

    await wait_until(in_directory, timeout=60, what=f"{len(subjects)} recipients in the directory")


async def command(
    bootstrap: str, subject: str, action: str, *, request_id: uuid.UUID | None = None, wait: bool = True, **extra: Any
) -> dict[str, Any]:
    """Send a command to the notifier and (unless wait=False) return its ack."""
    command_id = uuid.uuid4()
    await publish(
        bootstrap,
        command_topic("notifier"),
        PrivacyCommand(
            command_id=command_id,
            system="notifier",
            action=action,
            request_id=request_id or uuid.uuid4(),
            respond_by=datetime.now(UTC) + timedelta(days=1),
            **extra,
        ),
        subject=subject,
    )
    if not wait:
        return {}
    acks = await wait_for_messages(
        bootstrap, PRIVACY_ACKS, lambda m: (event_of(m) or {}).get("data", {}).get("command_id") == str(command_id), timeout=30
    )
    return dict(json.loads(acks[0].value)["data"])


async def consumed(db: asyncpg.Connection, event_id: str) -> None:
    """Wait until the notifier has applied the event `event_id` (a new id, not a redelivery): its claim
    commits in the transaction that applies it, so whatever the event did is in the database by then."""

    async def claimed() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM processed_events WHERE event_id = $1", event_id))

    await wait_until(claimed, what=f"event {event_id} to be consumed")


async def settled(db: asyncpg.Connection, where: str, *args: Any) -> None:
    """Wait until no matching email is queued or being sent."""

    async def idle() -> bool:
        busy = await db.fetchval(
            f"SELECT count(*) FROM emails WHERE ({where}) AND status IN ('queued', 'sending')", *args
        )
        return busy == 0

    await wait_until(idle, timeout=60, what=f"emails where {where} to settle")


def notification(
    nid: str,
    template: str = "verification_code",
    category: str = "transactional",
    params: dict[str, Any] | None = None,
    locale: str = "sv",
) -> NotificationRequested:
    return NotificationRequested(
        notification_id=nid,
        template=template,
        category=category,
        locale=locale,
        params=params if params is not None else {"code": "123456", "expires_minutes": 30},
    )


def merger(transaction_id: str) -> MergerNotice:
    return MergerNotice(
        transaction_id=transaction_id,
        kind="acquisition",
        counterparty="Acme Holding AB",
        effective_date=date(2026, 3, 1),
        data_categories=["contact", "account"],
        notice_url="https://isopartner.se/fusion",
    )


async def merger_fanout(stack: Any, db: asyncpg.Connection, n: int) -> tuple[float, list[Path]]:
    """Register n users (a third opted out of marketing), plus one erased and one restricted; send a merger
    notice; check exactly n arrive, once each. Returns the delivery rate (emails/s) and the files."""
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain(f"m{n}")
    run = uuid.uuid4().hex[:6]
    subjects = [f"m{n}-{run}-{i:05d}" for i in range(n)]
    opted_out = set(subjects[::3])
    erased, restricted = f"m{n}-{run}-erased", f"m{n}-{run}-restricted"
    await register(bootstrap, db, [*subjects, erased, restricted], domain, opted_out=opted_out)
    assert (await command(bootstrap, erased, "erase"))["status"] == "done"
    assert (await command(bootstrap, restricted, "restrict"))["status"] == "done"

    transaction_id = f"tx-{run}"
    started = time.monotonic()
    await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)
    files = await wait_for_mail(stack, domain, n, timeout=max(120.0, n / 20))  # a loaded CI machine: 20 emails/s
    elapsed = time.monotonic() - started
    job = f"merger-notice:{transaction_id}"
    await settled(db, "origin = $1 AND subject = ANY($2::text[])", job, subjects)

    files = mail_files(stack, domain)
    received = local_parts(files)
    assert len(files) == n, f"expected exactly {n} emails, got {len(files)}"
    assert set(received) == set(subjects) and set(received.values()) == {1}, "each recipient exactly once"
    assert erased not in received and restricted not in received
    assert opted_out <= set(received), "a merger notice is transactional: marketing opt-outs get it too"
    assert (
        await db.fetchval("SELECT status FROM emails WHERE notification_id = $1", f"{job}:{restricted}") == "suppressed"
    )
    assert await db.fetchval("SELECT count(*) FROM emails WHERE subject = $1", erased) == 0

    # A replay of the notice (new event id, same transaction) starts nothing and sends nothing: once it
    # is consumed, the job and its emails are as they were.
    async def job_done() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM fanout_jobs WHERE job_id = $1 AND done", job)

    job_before = await wait_until(job_done, what="the fan-out to finish its walk")

    async def email_statuses() -> tuple[int, dict[str, int]]:  # rows of the job; statuses of this test's
        rows = await db.fetch("SELECT status, count(*) FROM emails WHERE origin = $1 AND subject = ANY($2::text[]) "
                              "GROUP BY 1", job, [*subjects, restricted])
        total = await db.fetchval("SELECT count(*) FROM emails WHERE origin = $1", job)
        return total, {r["status"]: r["count"] for r in rows}

    emails_before = await email_statuses()
    replay = await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)
    await consumed(db, replay)
    assert await db.fetchrow("SELECT * FROM fanout_jobs WHERE job_id = $1", job) == job_before
    assert await db.fetchval("SELECT count(*) FROM fanout_jobs WHERE notice_id = $1", transaction_id) == 1
    assert await email_statuses() == emails_before, "nothing queued again"
    assert len(mail_files(stack, domain)) == n
    return n / elapsed, files


# --- tests -------------------------------------------------------------------------------------------


async def test_merger_notice_reaches_every_recipient_exactly_once(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    rate, files = await merger_fanout(stack, db, 500)
    print(f"\nmerger fan-out to 500: {rate:.0f} emails/s end to end")
    sample = parse(files[0])
    text = sample.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "ISOPARTNER AB" in text and "Acme Holding AB" in text
    assert sample["List-Unsubscribe"] is None and sample["Message-ID"]


async def test_smtp_refusing_then_accepting_delivers_each_email_once(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    if stack.smtp is None:
        pytest.skip("needs the embedded SMTP sink (REFUSE fault injection)")
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("refuse")
    subjects = [f"rf-{uuid.uuid4().hex[:8]}-{i:03d}" for i in range(40)]
    await register(bootstrap, db, subjects, domain)
    stack.smtp.refuse(True)
    try:
        await publish_many(
            bootstrap, NOTIFICATION_REQUESTED, [Outgoing(notification(f"test:refuse:{s}"), subject=s) for s in subjects]
        )

        async def refused_twice() -> bool:
            retried = await db.fetchval(
                "SELECT count(*) FROM emails WHERE subject = ANY($1::text[]) AND attempts >= 2 AND status = 'queued'",
                subjects,
            )
            return retried == len(subjects)

        await wait_until(refused_twice, timeout=30, what="every email refused at least twice")
        assert mail_files(stack, domain) == []
        errors = await db.fetch("SELECT DISTINCT last_error FROM emails WHERE subject = ANY($1::text[])", subjects)
        assert all("451" in r["last_error"] for r in errors), errors
    finally:
        stack.smtp.refuse(False)
    await wait_for_mail(stack, domain, len(subjects), timeout=30)
    await settled(db, "subject = ANY($1::text[])", subjects)
    await asyncio.sleep(1.0)
    received = local_parts(mail_files(stack, domain))
    assert set(received) == set(subjects) and set(received.values()) == {1}
    statuses = await db.fetch(
        "SELECT status, count(*) FROM emails WHERE subject = ANY($1::text[]) GROUP BY 1", subjects
    )
    assert {r["status"]: r["count"] for r in statuses} == {"sent": len(subjects)}
    status, metrics_text = await get_json(f"{notifier.url}/metrics")
    assert status == 200 and "privacy_emails_retried_total" in metrics_text


async def test_smtp_down_then_back_delivers_each_email_once(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    if stack.smtp is None:
        pytest.skip("needs the embedded SMTP sink")
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("down")
    subjects = [f"dn-{uuid.uuid4().hex[:8]}-{i:03d}" for i in range(20)]
    await register(bootstrap, db, subjects, domain)
    await stack.smtp.stop()
    try:
        await publish_many(
            bootstrap, NOTIFICATION_REQUESTED, [Outgoing(notification(f"test:down:{s}"), subject=s) for s in subjects]
        )

        async def tried() -> bool:
            errors = await db.fetch(
                "SELECT last_error FROM emails WHERE subject = ANY($1::text[]) AND last_error IS NOT NULL", subjects
            )
            return len(errors) > 0

        await wait_until(tried, timeout=30, what="a failed connection attempt")
    finally:
        await stack.smtp.start()
    await wait_for_mail(stack, domain, len(subjects), timeout=30)
    await settled(db, "subject = ANY($1::text[])", subjects)
    received = local_parts(mail_files(stack, domain))
    assert set(received) == set(subjects) and set(received.values()) == {1}


async def test_same_notification_twice_sends_one_email(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("dup")
    subject = f"dup-{uuid.uuid4().hex[:8]}"
    await register(bootstrap, db, [subject], domain)
    nid = f"dsar:{uuid.uuid4()}:verification"
    event_id = await publish(bootstrap, NOTIFICATION_REQUESTED, notification(nid), subject=subject)
    await publish(
        bootstrap, NOTIFICATION_REQUESTED, notification(nid), subject=subject, event_id=event_id
    )  # redelivery
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(nid), subject=subject)  # replay, new event id
    # A marker after them on the same partition: once its email is queued, all three were applied.
    marker = f"test:dup:{subject}:marker"
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(marker, params={"code": "654321",
                                                                                 "expires_minutes": 30}),
                  subject=subject)

    async def marker_queued() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM emails WHERE notification_id = $1", marker))

    await wait_until(marker_queued, what="the marker notification to be queued")
    await settled(db, "subject = $1", subject)
    bodies = [parse(f).get_body(("plain",)).get_content() for f in mail_files(stack, domain)]  # type: ignore[union-attr]
    assert len(bodies) == 2, "one email for the three deliveries, one for the marker"
    assert sum("123456" in body for body in bodies) == 1 and sum("654321" in body for body in bodies) == 1
    assert await db.fetchval("SELECT count(*) FROM emails WHERE notification_id = $1", nid) == 1


async def test_malformed_messages_are_dead_lettered_and_the_next_one_is_processed(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("dlq")
    run = uuid.uuid4().hex[:8]

    # user-registered: not JSON, then a valid registration.
    bad_subject, good_subject = f"dlq-bad-{run}", f"dlq-good-{run}"
    await publish_raw(bootstrap, USER_REGISTERED, bad_subject.encode(), b'{"not json', headers=[("trace", b"t-1")])
    await register(bootstrap, db, [good_subject], domain)

    # merger-notice: data missing counterparty, then a valid notice (its fan-out job must start).
    bad_tx, good_tx = f"tx-bad-{run}", f"tx-good-{run}"
    bad_merger = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": MERGER_NOTICE,
        "source": "urn:test",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "transaction_id": bad_tx,
            "kind": "merger",
            "effective_date": "2026-01-01",
            "data_categories": [],
            "notice_url": "https://x.example/n",
        },
    }
    await publish_raw(bootstrap, MERGER_NOTICE, bad_tx.encode(), json.dumps(bad_merger).encode())
    await publish(bootstrap, MERGER_NOTICE, merger(good_tx), subject=None, key=good_tx)

    # notification-requested: a template param missing (refused at render time), then a valid one.
    bad_nid, good_nid = f"test:dlq:{run}:bad", f"test:dlq:{run}:good"
    bad_event = await publish(
        bootstrap,
        NOTIFICATION_REQUESTED,
        notification(bad_nid, "request_rejected", params={"request_id": "R-1", "right": "access"}),
        subject=good_subject,
    )
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(good_nid), subject=good_subject)

    dead = {}
    for topic, key in ((USER_REGISTERED, bad_subject), (MERGER_NOTICE, bad_tx), (NOTIFICATION_REQUESTED, good_subject)):
        hits = await wait_for_messages(bootstrap, dlq_topic(topic), lambda m, k=key: m.key == k.encode(), timeout=30)
        dead[topic] = hits[0]
        assert header(hits[0], "x-original-topic") == topic
        assert header(hits[0], "x-original-partition") is not None
        assert header(hits[0], "x-original-offset") is not None
        assert header(hits[0], "x-error")
    assert dead[USER_REGISTERED].value == b'{"not json'
    assert header(dead[USER_REGISTERED], "trace") == "t-1", "original headers are kept"
    assert "counterparty" in str(header(dead[MERGER_NOTICE], "x-error"))
    assert json.loads(dead[NOTIFICATION_REQUESTED].value)["id"] == bad_event
    assert "reason" in str(header(dead[NOTIFICATION_REQUESTED], "x-error"))

    async def job_started() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM fanout_jobs WHERE notice_id = $1", good_tx))

    await wait_until(job_started, what="the valid merger notice's fan-out")
    assert await db.fetchval("SELECT count(*) FROM fanout_jobs WHERE notice_id = $1", bad_tx) == 0
    await wait_for_mail(stack, domain, 2)  # the good verification code, and the good merger notice
    assert await db.fetchval("SELECT count(*) FROM emails WHERE notification_id = $1", bad_nid) == 0


async def test_marketing_needs_consent_and_carries_one_click_unsubscribe(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("mk")
    yes, no = f"{MARKETING_YES}-{uuid.uuid4().hex[:8]}", f"mkno-{uuid.uuid4().hex[:8]}"
    await register(bootstrap, db, [yes, no], domain, locale="en")
    params = {
        "version": "2026-02",
        "effective_date": "2026-03-01",
        "summary_sv": "Nyheter",
        "summary_en": "News",
        "url": "https://isopartner.se/p",
    }
    for subject in (yes, no):
        await publish(
            bootstrap,
            NOTIFICATION_REQUESTED,
            notification(f"test:mk:{subject}", "policy_changed", "marketing", params, locale="en"),
            subject=subject,
        )
    files = await wait_for_mail(stack, domain, 1)
    await settled(db, "subject = ANY($1::text[])", [yes, no])
    assert local_parts(mail_files(stack, domain)) == Counter({yes: 1})
    assert await db.fetchval("SELECT last_error FROM emails WHERE subject = $1", no) == "no_consent"
    msg = parse(files[0])
    unsubscribe = str(msg["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://consent.test/v1/unsubscribe/") and unsubscribe.endswith(">")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = unsubscribe[1:-1].rsplit("/", 1)[1]
    claims = TokenSigner(base64.b64decode(TEST_MASTER_KEY), UNSUBSCRIBE).verify(token)
    assert claims == {"s": yes, "p": "marketing_email", "l": "en"}, "the page opens in the email's language"
    assert unsubscribe[1:-1] in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_directory_commands_rectify_restrict_export_erase(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain, new = new_domain("cmd"), new_domain("cmdnew")
    subject = f"cmd-{uuid.uuid4().hex[:8]}"
    await register(bootstrap, db, [subject], domain)

    # An address with a line break would carry headers of the sender's choosing: refused, nothing changed.
    injected = f"{subject}@{new}\r\nBcc: evil@example.com"
    ack = await command(bootstrap, subject, "rectify", fields={"email": injected})
    assert ack["status"] == "failed" and "line breaks" in ack["detail"]
    ack = await command(bootstrap, subject, "rectify", fields={"email": f"{subject}@{new}", "locale": "en"})
    assert ack["status"] == "done"
    exported = await command(bootstrap, subject, "export")
    assert exported["export"]["directory"]["email"] == f"{subject}@{new}"
    assert exported["export"]["directory"]["locale"] == "en"

    # Restricted: a rights-request notice still goes, a legal-disclosure notice does not.
    await command(bootstrap, subject, "restrict")
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(f"test:cmd:{subject}:code"), subject=subject)
    await publish(
        bootstrap,
        LEGAL_DISCLOSURE,
        LegalDisclosure(
            case_ref="K-1",
            authority="Polismyndigheten",
            legal_basis="RB 27 kap.",
            data_categories=["contact"],
            may_notify_subject=True,
            recipient_country="SE",
            outside_eea=False,
        ),
        subject=subject,
    )
    files = await wait_for_mail(stack, new, 1)
    await settled(db, "subject = $1", subject)
    assert len(mail_files(stack, new)) == 1 and mail_files(stack, domain) == []
    assert "verification code" in parse(files[0]).get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # Erased: the entry and the key are gone and nothing is sent any more.
    ack = await command(bootstrap, subject, "erase")
    assert ack["status"] == "done"
    assert await db.fetchval("SELECT count(*) FROM recipients WHERE subject = $1", subject) == 0
    assert await db.fetchval("SELECT count(*) FROM subject_keys WHERE subject = $1", subject) == 0
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(f"test:cmd:{subject}:after"), subject=subject)
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@{new}"), subject=subject)

    async def recorded() -> str | None:
        return await db.fetchval("SELECT status FROM emails WHERE notification_id = $1", f"test:cmd:{subject}:after")

    assert await wait_until(recorded, what="the post-erasure request to be recorded") == "suppressed"
    await asyncio.sleep(1.0)
    assert len(mail_files(stack, new)) == 1
    assert await db.fetchval("SELECT count(*) FROM recipients WHERE subject = $1", subject) == 0


async def test_erasure_confirmation_reaches_the_subject_whichever_arrives_first(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    """The dsar service requests `erasure_completed`, then erases the notifier: the two topics race."""
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("erase")
    first, second = f"er-{uuid.uuid4().hex[:8]}", f"er-{uuid.uuid4().hex[:8]}"
    await register(bootstrap, db, [first, second], domain, locale="en")
    retained = [{"system": "billing", "basis": "Bokföringslagen 7:2 (7 years)"}]

    def confirmation(request_id: uuid.UUID) -> NotificationRequested:
        return notification(
            f"dsar:{request_id}:completed",
            "erasure_completed",
            params={"request_id": str(request_id), "retained": retained, "systems": ["billing"]},
        )

    # As the dsar service does it: request the email, then the erase, back to back.
    r1 = uuid.uuid4()
    await publish(bootstrap, NOTIFICATION_REQUESTED, confirmation(r1), subject=first)
    await command(bootstrap, first, "erase", request_id=r1, wait=False)
    # The late case: the erase is applied before the request for the email arrives.
    r2 = uuid.uuid4()
    assert (await command(bootstrap, second, "erase", request_id=r2))["status"] == "done"
    await publish(bootstrap, NOTIFICATION_REQUESTED, confirmation(r2), subject=second)
    await publish(bootstrap, NOTIFICATION_REQUESTED, notification(f"test:erase:{second}"), subject=second)

    files = await wait_for_mail(stack, domain, 2)
    await settled(db, "subject = ANY($1::text[])", [first, second])
    await asyncio.sleep(1.0)
    assert local_parts(mail_files(stack, domain)) == Counter({first: 1, second: 1})
    for path in files:
        msg = parse(path)
        assert str(msg["Subject"]).startswith("Your personal data has been erased"), "in the directory's locale"
        assert "Bokföringslagen 7:2" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for subject in (first, second):
        for table in ("recipients", "subject_keys", "final_notices"):
            assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE subject = $1", subject) == 0, table
    assert await db.fetchval("SELECT status FROM emails WHERE notification_id = $1", f"test:erase:{second}") == (
        "suppressed"
    )


async def test_immaterial_policy_change_sends_nothing(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    version = f"v-{uuid.uuid4().hex[:8]}"
    event_id = await publish(
        stack.endpoints.kafka_bootstrap,
        POLICY_CHANGED,
        PolicyChanged(
            version=version,
            effective_date=date(2026, 1, 1),
            material=False,
            summary_sv="Stavfel",
            summary_en="Typos",
            url="https://isopartner.se/p",
        ),
        subject=None,
        key=version,
    )
    await consumed(db, event_id)  # a fan-out job would have been created in the same transaction
    assert await db.fetchval("SELECT count(*) FROM fanout_jobs WHERE notice_id = $1", version) == 0
    status, body = await get_json(
        f"{notifier.url}/v1/admin/emails",
        params={"status": "sent"},
        headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"},
    )
    assert status == 200 and body["status"] == "sent"
    assert f"{POLICY_CHANGED}:{version}" not in {job["job_id"] for job in body["fanouts"]}, "operators see none"
    assert (await get_json(f"{notifier.url}/v1/admin/emails"))[0] == 401


async def test_material_policy_change_reaches_everyone_in_their_language(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("policy")
    swedes = [f"sv-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    english = [f"en-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    await register(bootstrap, db, swedes, domain)
    await register(bootstrap, db, english, domain, locale="en")
    version = f"v-{uuid.uuid4().hex[:8]}"
    await publish(bootstrap, POLICY_CHANGED, PolicyChanged(
        version=version, effective_date=date(2027, 1, 1), material=True, summary_sv="Nya ändamål",
        summary_en="New purposes", url="https://isopartner.se/policy"), subject=None, key=version)
    files = await wait_for_mail(stack, domain, len(swedes) + len(english), timeout=120)
    by_recipient = {parse(f)["To"].addresses[0].username: parse(f) for f in files}
    assert sorted(by_recipient) == sorted(swedes + english), "one email each"
    for subject, message in by_recipient.items():
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert ("New purposes" if subject.startswith("en-") else "Nya ändamål") in text
        assert "ISOPARTNER AB" in text and "List-Unsubscribe" not in message, "transactional: no unsubscribe"


async def test_legal_disclosure_is_emailed_only_where_the_law_allows(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("disclosure")
    told, confidential = f"told-{uuid.uuid4().hex[:10]}", f"quiet-{uuid.uuid4().hex[:10]}"
    await register(bootstrap, db, [told, confidential], domain, locale="en")
    for subject, may_notify in ((confidential, False), (told, True)):
        await publish(bootstrap, LEGAL_DISCLOSURE, LegalDisclosure(
            case_ref=f"case-{subject}", authority="Polismyndigheten", legal_basis="RB 27:1",
            data_categories=["contact"], may_notify_subject=may_notify, recipient_country="SE",
            outside_eea=False), subject=subject)
    [mail] = await wait_for_mail(stack, domain, 1)
    assert parse(mail)["To"].addresses[0].username == told
    assert "Polismyndigheten" in parse(mail).get_body(preferencelist=("plain",)).get_content()

    async def both_audited() -> bool:
        rows = await db.fetch("SELECT subject, detail FROM audit_log WHERE action = 'legal_disclosure_received' "
                              "AND subject = ANY($1::text[])", [told, confidential])
        return len(rows) == 2

    await wait_until(both_audited, what="both disclosures in the audit trail")
    await asyncio.sleep(2.0)  # the confidential one would have been queued with the other
    assert [p for p in mail_files(stack, domain) if confidential in p.name] == []
    assert await db.fetchval("SELECT count(*) FROM emails WHERE subject = $1", confidential) == 0


@pytest.mark.slow
async def test_merger_notice_to_5000_recipients(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    rate, _ = await merger_fanout(stack, db, 5000)
    print(f"\nmerger fan-out to 5000: {rate:.0f} emails/s end to end")


async def test_a_crash_mid_delivery_loses_nothing_and_duplicates_are_recognisable(stack: Stack, notifier: ServiceProcess, db: asyncpg.Connection) -> None:
    """SIGKILL while a fan-out is still walking the directory, restart, SIGKILL again while it sends,
    restart: the fan-out resumes from its cursor and every recipient gets the notice; rows a dead
    process had claimed are retaken after the lease; at most the one email in flight per crash can
    arrive twice, and then with the same Message-ID. (Last in the module: a killed member slows the
    group's rebalance.)"""
    bootstrap = stack.endpoints.kafka_bootstrap
    domain = new_domain("crash")
    run = uuid.uuid4().hex[:6]
    subjects = [f"cr-{run}-{i:04d}" for i in range(1000)]
    await register(bootstrap, db, subjects, domain)
    transaction_id = f"tx-crash-{run}"
    await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)
    job = f"merger-notice:{transaction_id}"

    async def paging() -> bool:  # the kill lands while the directory is still being paged
        return bool(await db.fetchval("SELECT queued > 0 AND NOT done FROM fanout_jobs WHERE job_id = $1", job))

    await wait_until(paging, timeout=60, interval=0.01, what="the fan-out to be paging")
    notifier.kill()  # first crash: while the directory is being paged
    paged = await db.fetchrow("SELECT queued, done FROM fanout_jobs WHERE job_id = $1", job)
    notifier.start()
    await notifier.wait_ready()
    await wait_for_mail(stack, domain, 150, timeout=60)
    notifier.kill()  # second crash: while emails are being sent
    stuck = await db.fetchval("SELECT count(*) FROM emails WHERE origin = $1 AND status = 'sending'", job)
    notifier.start()
    await notifier.wait_ready()

    async def everyone() -> bool:
        return set(local_parts(mail_files(stack, domain))) >= set(subjects)

    await wait_until(everyone, timeout=90, interval=0.5, what="every recipient after the restart")
    await settled(db, "origin = $1 AND subject = ANY($2::text[])", f"merger-notice:{transaction_id}", subjects)
    files = mail_files(stack, domain)
    counts = local_parts(files)
    twice = [s for s, n in counts.items() if n > 1]
    assert len(twice) <= 2 and max(counts.values()) <= 2, f"more duplicates than two crash windows allow: {twice}"
    for subject in twice:
        ids = {parse(p)["Message-ID"] for p in files if f"-{subject}@" in p.name}
        assert len(ids) == 1, "a resend carries the same Message-ID"
    statuses = await db.fetch(
        "SELECT status, count(*) FROM emails WHERE origin = $1 AND subject = ANY($2::text[]) GROUP BY 1",
        f"merger-notice:{transaction_id}",
        subjects,
    )
    assert {r["status"]: r["count"] for r in statuses} == {"sent": len(subjects)}
    _, text = await get_json(f"{notifier.url}/metrics")
    retaken = [line for line in text.splitlines() if line.startswith("privacy_emails_lease_expired_total ")]
    print(f"\ncrash: fan-out {'done' if paged['done'] else 'still paging'} at the kill ({paged['queued']} queued); "
          f"{stuck} rows were in 'sending'; {len(twice)} duplicate(s); {retaken}")
    if stuck:
        assert retaken and float(retaken[0].split()[1]) >= 1
