"""PII at rest: a dump of every table of every service holds no plaintext email, name or phone."""

from __future__ import annotations

import asyncpg
import pytest

from schemas.events import ConsentGrant, MergerNotice, UserRegistered
from schemas.topics import MERGER_NOTICE, USER_REGISTERED
from tests.helpers import ServiceProcess, publish, subject_id, wait_until

pytestmark = pytest.mark.stack

SCHEMAS = ("consent", "dsar", "notifier")


async def _dump(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'", list(SCHEMAS))
        chunks = []
        for row in tables:
            rows = await conn.fetch(f'SELECT t::text AS line FROM "{row[0]}"."{row[1]}" t')
            chunks.extend(r["line"] for r in rows)
        return "\n".join(chunks)
    finally:
        await conn.close()


async def test_no_plaintext_pii_in_any_table(stack) -> None:  # type: ignore[no-untyped-def]
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
        dump = await _dump(dsn)
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
