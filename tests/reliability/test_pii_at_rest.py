"""PII at rest: a dump of every table of every service holds no plaintext email, name or phone; after an
erasure, not even in an operator's reasons or a system's answers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from privacy_runtime.audit import verify_chain
from schemas.events import (
    ConsentGrant,
    DsarDetails,
    DsarRequested,
    ErasureRequested,
    MergerNotice,
    UserRegistered,
)
from schemas.topics import (
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    EXTERNAL_SYSTEMS,
    MERGER_NOTICE,
    PRIVACY_AUDIT,
    USER_REGISTERED,
)
from tests.helpers import (
    SERVICE_SCHEMAS,
    TEST_ADMIN_TOKEN,
    CommandPlayer,
    ServiceProcess,
    downstream_answer,
    dump_tables,
    get_json,
    playing,
    publish,
    read_topic,
    subject_id,
    wait_until,
)

pytestmark = pytest.mark.stack

async def _async(value: bool) -> bool:
    return value


async def test_no_plaintext_pii_in_any_table(stack: Stack) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    dsn = stack.endpoints.database_url
    consent = ServiceProcess("consent", stack.env()).start()
    notifier = ServiceProcess("notifier", stack.env(), {"CONSENT_BASE_URL": consent.url}).start()
    dsar = ServiceProcess("dsar", stack.env()).start()
    people = []
    try:
        for service in (consent, notifier, dsar):
            await service.wait_ready(timeout=90)
        for i in range(5):
            subject = subject_id("pii")
            person = {"subject": subject, "email": f"very.private.{subject}@example.org",
                      "name": f"Märta Hemligsson{i}", "phone": f"+46 70 555 12 3{i}"}
            people.append(person)
            await publish(bootstrap, USER_REGISTERED, UserRegistered(
                email=person["email"], name=person["name"], phone=person["phone"], company="Hemlig AB",
                country="SE", consents=[ConsentGrant(purpose="marketing_email", granted=True)]), subject=subject)
        async def stored() -> bool:
            conn = await asyncpg.connect(dsn)
            try:
                subjects = [p["subject"] for p in people]
                recipients = await conn.fetchval(
                    "SELECT count(*) FROM notifier.recipients WHERE subject = ANY($1::text[])", subjects)
                ledger = await conn.fetchval(
                    "SELECT count(*) FROM consent.consent_ledger WHERE subject = ANY($1::text[])", subjects)
                emails = await conn.fetchval(
                    "SELECT count(*) FROM notifier.emails WHERE subject = ANY($1::text[])", subjects)
                return recipients == len(people) and ledger == len(people) and emails >= want_emails
            finally:
                await conn.close()

        want_emails = 0
        await wait_until(stored, timeout=60, what="the people to be stored by every service")
        # A merger notice goes to everyone in the directory, so the email outbox holds their rows too.
        await publish(bootstrap, MERGER_NOTICE, MergerNotice(
            transaction_id="pii-check-1", kind="merger", counterparty="Other AB", effective_date="2027-01-01",
            data_categories=["contact"], notice_url="https://www.isopartner.se/merger"), subject=None,
            key="pii-check-1")

        want_emails = len(people)
        await wait_until(stored, timeout=60, what="the merger notice to be queued for them")

        # Rights requests put PII into dsar too: corrections (new values), and export fragments the
        # internal systems send back (the notifier's holds the email address).
        first = people[0]
        corrected = {"email": f"new.private.{first['subject']}@example.org", "name": "Märta Nyhemlig",
                     "phone": "+46 70 555 99 99"}
        people.append({"subject": first["subject"], **corrected})
        rectification, access = uuid.uuid4(), uuid.uuid4()
        await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
            request_id=rectification, right="rectification", identity_verified=True, requested_via="web_form",
            details=DsarDetails(corrections=corrected)), subject=first["subject"])
        await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
            request_id=access, right="access", identity_verified=True, requested_via="web_form"),
            subject=first["subject"])

        async def dsar_holds_them() -> bool:
            conn = await asyncpg.connect(dsn)
            try:
                fragments = await conn.fetchval(
                    "SELECT count(*) FROM dsar.export_fragments WHERE request_id = $1", access)
                cases = await conn.fetchval(
                    "SELECT count(*) FROM dsar.cases WHERE request_id = ANY($1::uuid[])", [rectification, access])
                # The notifier applied the corrections to its directory (its ack is recorded): the new
                # values are at rest there too by now.
                rectified = await conn.fetchval(
                    "SELECT count(*) FROM dsar.commands WHERE request_id = $1 AND system = 'notifier' "
                    "AND action = 'rectify' AND ack_status = 'done'", rectification)
                return cases == 2 and fragments >= 2 and rectified == 1  # consent's and the notifier's at least
            finally:
                await conn.close()

        await wait_until(dsar_holds_them, timeout=60, what="the corrections and export fragments in dsar")
        dump = await dump_tables(dsn)

        # A message whose Kafka key is an email address (and not its subject) is dead-lettered by every
        # consumer of the topic, and the error names the key: a warning each service logs after start.
        leaked = f"leaked.{first['subject']}@example.org"
        people.append({"subject": first["subject"], "email": leaked, "name": leaked, "phone": leaked})
        await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"x.{first['subject']}@example.org"),
                      subject=first["subject"], key=leaked)

        def logged_dead_letter(service: ServiceProcess) -> bool:
            text = service.log_path.read_text(errors="replace") if service.log_path else ""
            return "key_mismatch" in text

        for service in (consent, notifier, dsar):
            await wait_until(lambda s=service: _async(logged_dead_letter(s)), timeout=30,
                             what=f"{service.name} to log the dead letter")
        dump += "\n" + await dump_tables(dsn)  # the dead letter's key must not be at rest either
    finally:
        for service in (consent, notifier, dsar):
            service.stop()

    assert len(dump) > 1000, "the dump is not empty"
    for person in people:
        for field in ("email", "name", "phone"):
            value = person[field]
            assert value not in dump, f"plaintext {field} found at rest"
            assert value.encode().hex() not in dump, f"{field} found at rest as hex bytes"
    assert "Hemlig AB" not in dump

    # Nor in the services' logs: every log record, also the ones written after faust set up its own
    # logging at start, is a scrubbing JSON line (faust's banner and progress output are not records).
    for service in (consent, notifier, dsar):
        assert service.log_path is not None
        text = service.log_path.read_text(errors="replace")
        records = [json.loads(line[line.index("{"):]) for line in text.splitlines() if '{"ts": ' in line]
        dead_letters = [r for r in records if "key_mismatch" in r["msg"]]
        assert dead_letters, f"{service.name}: the dead letter's warning is not a JSON record"
        assert "<email>" in dead_letters[0]["msg"], f"{service.name}: the key in the error was not scrubbed"
        assert not re.search(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[\d+\] \[[A-Z]+\]", text, re.MULTILINE), \
            f"{service.name}: a log record in faust's plain format, not scrubbed"
        for person in people:
            for field in ("email", "name", "phone"):
                assert person[field] not in text, f"plaintext {field} in the {service.name} log"


class TalkativeSystems(CommandPlayer):
    """Every external system, answering each command at once, in words that name the person (as a
    support desk's note might): `detail` of every answer names them."""

    source = "urn:test:talkative"

    def __init__(self, bootstrap: str, words: str):
        super().__init__(bootstrap, EXTERNAL_SYSTEMS, from_now=True)
        self.words = words

    async def on_command(self, subject: str, command: dict[str, Any]) -> None:
        await self.answer(subject, {**downstream_answer(subject, command), "detail": self.words})


NAME = "Rut Raderasson"


@pytest.fixture
async def talkative(stack: Stack) -> AsyncIterator[None]:
    words = f"removed the tickets of {NAME} (she called twice)"
    async with playing(TalkativeSystems(stack.endpoints.kafka_bootstrap, words)):
        yield


async def test_no_operator_reason_or_answer_detail_names_an_erased_subject(
    stack: Stack, system: dict[str, ServiceProcess], talkative: None
) -> None:
    """An operator rejects one request and extends another with reasons that name the person; every
    system answers in words that name them. After the erasure, no table holds those words readable, no
    `privacy-audit` entry carries them, and every audit chain still verifies."""
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    dsar = system["dsar"].url
    subject = subject_id("words")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.org", name="R R",
                                                             country="SE"), subject=subject)
    access, erasure = uuid.uuid4(), uuid.uuid4()
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(request_id=access, right="access",
                                                           identity_verified=False, requested_via="email"),
                  subject=subject)
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=erasure, ground="consent_withdrawn", identity_verified=False, requested_via="email"),
        subject=subject)

    async def status_of(request_id: uuid.UUID) -> str | None:
        status, body = await get_json(f"{dsar}/v1/requests/{request_id}")
        return body["status"] if status == 200 else None

    for request_id in (access, erasure):
        await wait_until(lambda r=request_id: _is(status_of(r), "identity_pending"), timeout=60,
                         what="the request to wait for identity")
    async with httpx.AsyncClient(timeout=30) as client:
        rejected = await client.post(
            f"{dsar}/v1/admin/requests/{access}/reject", headers=admin,
            json={"reason": f"{NAME} phoned from her brother's number; not the account holder"})
        assert rejected.status_code == 200, rejected.text
        extended = await client.post(f"{dsar}/v1/admin/requests/{erasure}/extend", headers=admin,
                                     json={"months": 1, "reason": f"{NAME} asked us to wait for her lawyer"})
        assert extended.status_code == 200, extended.text
        shown = await client.get(f"{dsar}/v1/admin/requests/{erasure}", headers=admin)
        assert NAME in shown.json()["extension_reason"], "operators still read the reason while it is kept"
        approved = await client.post(f"{dsar}/v1/admin/requests/{erasure}/approve", headers=admin)
        assert approved.status_code == 200, approved.text
    await wait_until(lambda: _is(status_of(erasure), "completed"), timeout=120, interval=0.5,
                     what="the erasure to complete")

    dump = await dump_tables(dsn)
    assert len(dump) > 1000
    assert NAME not in dump and NAME.encode().hex() not in dump, "the person's name is readable at rest"
    published = [m for m in await read_topic(bootstrap, PRIVACY_AUDIT) if NAME.encode() in (m.value or b"")]
    assert not published, "an audit entry on privacy-audit carries the words"
    conn = await asyncpg.connect(dsn)
    try:
        for schema in SERVICE_SCHEMAS:
            await conn.execute(f'SET search_path = "{schema}"')
            checked, problems = await verify_chain(conn)
            assert checked and not problems, (schema, problems[:3])
        sealed = await conn.fetchval(
            "SELECT count(*) FROM dsar.audit_log WHERE ref = $1 AND detail ? 'reason'", str(erasure))
    finally:
        await conn.close()
    assert sealed, "the extension is in the audit chain, by the digest of its sealed reason"


async def _is(value: Any, expected: str) -> bool:
    return (await value) == expected
