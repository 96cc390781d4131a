"""End-to-end scenarios that read like the policy, through all three services, a real broker, database
and SMTP server. The stand-ins `make run` starts play the external downstream systems."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.smtp_sink import read_messages
from devstack.stack import Stack
from privacy_runtime.crypto import KeyRing
from schemas.events import (
    ConsentChanged,
    ConsentGrant,
    ErasureRequested,
    NotificationRequested,
    UserRegistered,
)
from schemas.topics import (
    CONSENT_CHANGED,
    ERASURE_REQUESTED,
    EXTERNAL_SYSTEMS,
    NOTIFICATION_REQUESTED,
    USER_REGISTERED,
)
from tests.helpers import (
    SERVICE_SCHEMAS,
    TEST_MASTER_KEY,
    ExternalSystems,
    ServiceProcess,
    dump_tables,
    get_json,
    publish,
    subject_id,
    wait_until,
)

pytestmark = pytest.mark.stack


async def register_for_marketing(stack: Stack, system: dict[str, ServiceProcess], subject: str, name: str,
                                 locale: str) -> str:
    """A person registered with marketing consent, known to consent and in the notifier's directory;
    returns their address."""
    address = f"{subject}@example.org"
    await publish(stack.endpoints.kafka_bootstrap, USER_REGISTERED, UserRegistered(
        email=address, name=name, country="SE", locale=locale,
        consents=[ConsentGrant(purpose="marketing_email", granted=True)]), subject=subject)

    async def registered() -> bool:
        status, body = await get_json(f"{system['consent'].url}/v1/decisions",
                                      params={"subject": subject, "purpose": "marketing_email"})
        conn = await asyncpg.connect(stack.endpoints.database_url)
        try:
            known = await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject)
        finally:
            await conn.close()
        return status == 200 and body["allowed"] and known == 1

    await wait_until(registered, what="the person to be registered in consent and notifier")
    return address


def _mails_to(mail_dir: Path, address: str) -> list[Any]:
    return [m for m in read_messages(mail_dir, containing=address) if address in str(m.get("To", ""))]


async def test_a_user_asks_to_be_erased_and_nothing_of_theirs_remains_readable(stack: Stack, system: dict[str, ServiceProcess], systems: ExternalSystems) -> None:
    """The request is unverified: a one-time code arrives by email and verifies it. Then every system is
    told to erase; billing keeps invoices under Bokföringslagen and says so; the person gets one
    confirmation naming what was kept and why; every service has destroyed their key, and only a keyed
    hash remembers their marketing opt-out."""
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    subject = subject_id("erase")
    address = f"{subject}@example.org"
    await publish(bootstrap, USER_REGISTERED, UserRegistered(
        email=address, name="Erik Raderad", phone="+46 70 000 00 01", country="SE", locale="en",
        consents=[ConsentGrant(purpose="marketing_email", granted=True)]), subject=subject)

    async def known_everywhere() -> bool:
        status, _ = await get_json(f"{system['consent'].url}/v1/decisions",
                                   params={"subject": subject, "purpose": "marketing_email"})
        conn = await asyncpg.connect(dsn)
        try:
            in_directory = await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject)
        finally:
            await conn.close()
        return status == 200 and in_directory == 1

    await wait_until(known_everywhere, what="the user to be registered in consent and notifier")
    marker = f"erase-{uuid.uuid4().hex[:8]}"  # the policy version of the opt-out, to find its proof
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="email_footer", policy_version=marker), subject=subject)

    async def opted_out() -> bool:
        _, body = await get_json(f"{system['consent'].url}/v1/decisions",
                                 params={"subject": subject, "purpose": "marketing_email"})
        return body.get("allowed") is False

    await wait_until(opted_out, what="the opt-out to be recorded")
    request_id = uuid.uuid4()
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=request_id, ground="consent_withdrawn", identity_verified=False, requested_via="email"),
        subject=subject)

    async def code_email() -> list[Any]:
        return [m for m in _mails_to(stack.endpoints.mail_dir, address) if "verification code" in str(m["Subject"])]

    mail = (await wait_until(code_email, timeout=60, what="the verification code email"))[0]
    code = re.search(r"verification code: (\d{6})", mail.get_body(preferencelist=("plain",)).get_content())
    assert code, "the email states the code"
    assert not [c for s, c, subj in systems.received if subj == subject and c["action"] == "erase"], \
        "nothing is erased before the identity is verified"
    async with httpx.AsyncClient() as client:
        verified = await client.post(f"{system['dsar'].url}/v1/requests/{request_id}/verify",
                                     json={"code": code.group(1)})
    assert verified.status_code == 200, verified.text

    async def completed() -> bool:
        status, body = await get_json(f"{system['dsar'].url}/v1/requests/{request_id}")
        return status == 200 and body["status"] == "completed"

    await wait_until(completed, timeout=90, interval=0.5, what="the erasure to complete")
    told = {s for s, c, subj in systems.received if subj == subject and c["action"] == "erase"}
    assert told == set(EXTERNAL_SYSTEMS), "every external system was told to erase"
    revoked = {s for s, c, subj in systems.received if subj == subject and c["action"] == "revoke_sharing"}
    assert {"partners", "ipcom_group"} <= revoked, "sharing recipients are told to stop first (Art. 17(2))"

    async def confirmation() -> list[Any]:
        return [m for m in _mails_to(stack.endpoints.mail_dir, address) if "erased" in str(m["Subject"])]

    mails = await wait_until(confirmation, timeout=60, what="the erasure confirmation email")
    await asyncio.sleep(2)
    mails = await confirmation()
    assert len(mails) == 1, [m["Subject"] for m in mails]
    body = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert "Bokföringslagen" in body and "ISOPARTNER AB" in body

    conn = await asyncpg.connect(dsn)
    try:
        for schema in ("consent", "dsar", "notifier"):
            keys = await conn.fetchval(f"SELECT count(*) FROM {schema}.subject_keys WHERE subject = $1", subject)
            assert keys == 0, f"{schema} still holds the subject's key"
        assert await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject) == 0
        assert await conn.fetchval("SELECT count(*) FROM consent.subjects WHERE subject = $1", subject) == 0
        proofs = await conn.fetch("SELECT * FROM consent.opt_out_proofs WHERE policy_version = $1", marker)
        assert [(p["purpose"], p["channel"]) for p in proofs] == [("marketing_email", "email_footer")]
        assert subject not in str(dict(proofs[0])), "the proof names no one"
        assert await conn.fetchval(
            "SELECT count(*) FROM notifier.final_notices WHERE subject = $1", subject) == 0, \
            "the confirmation's own copy of the address is gone once it was sent"
        # Whatever sealed rows remain (outbox, exports, params) can no longer be opened: no service has a
        # key for them, and each keeps a tombstone, so nothing creates a new one for this subject.
        for schema in SERVICE_SCHEMAS:
            await conn.execute(f'SET search_path = "{schema}"')
            keyring = KeyRing(base64.b64decode(TEST_MASTER_KEY))
            await keyring.load_lookup_key(conn)
            assert await keyring.data_key(conn, subject, create=False) is None, schema
            assert await keyring.is_erased(conn, subject), f"{schema} keeps no tombstone"
    finally:
        await conn.close()
    dump = await dump_tables(dsn)
    for value in (address, "Erik Raderad", "+46 70 000 00 01"):
        assert value not in dump and value.encode().hex() not in dump, f"{value} is still readable at rest"
    async with httpx.AsyncClient() as client:
        gone = await client.get(f"{system['consent'].url}/v1/decisions",
                                params={"subject": subject, "purpose": "marketing_email"})
    assert gone.status_code == 404


async def test_a_user_opts_out_of_marketing_from_the_email_footer_and_every_marketing_system_is_told(
    stack: Stack, system: dict[str, ServiceProcess], systems: ExternalSystems
) -> None:
    """A marketing email carries RFC 8058 one-click unsubscribe headers; the one click withdraws consent
    in the ledger (channel email_footer) and the marketing system is told to suppress; the next marketing
    email is not sent, while a transactional notice still is."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("footer")
    address = await register_for_marketing(stack, system, subject, "Fia Fotnot", "sv")
    newsletter = NotificationRequested(
        notification_id=f"newsletter:2026-11:{subject}", template="policy_changed", category="marketing",
        locale="sv", params={"version": "2026-11", "effective_date": "2026-12-01", "summary_sv": "Nyheter",
                             "summary_en": "News", "url": "https://www.isopartner.se/nyheter"})
    await publish(bootstrap, NOTIFICATION_REQUESTED, newsletter, subject=subject)
    mails = await wait_until(lambda: _async(_mails_to(stack.endpoints.mail_dir, address)), timeout=30,
                             what="the marketing email")
    header = str(mails[0]["List-Unsubscribe"])
    assert mails[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header.strip("<>")
    assert "/v1/unsubscribe/" in link
    base, token = link.rsplit("/", 1)
    payload, stamp, signature = token.split(".")  # itsdangerous: payload.timestamp.signature
    other = base64.urlsafe_b64encode(json.dumps({"s": subject_id("other"), "p": "marketing_email"},
                                                separators=(",", ":")).encode()).rstrip(b"=").decode()
    altered = [  # a changed signature; this signature on a payload naming someone else
        f"{base}/{payload}.{stamp}.{signature[:-2]}{'AB' if signature[-2:] != 'AB' else 'CD'}",
        f"{base}/{other}.{stamp}.{signature}",
    ]
    async with httpx.AsyncClient() as client:
        for forged in altered:
            refused = await client.post(forged, content=b"List-Unsubscribe=One-Click",
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert 400 <= refused.status_code < 500, forged
        _, still = await get_json(f"{system['consent'].url}/v1/decisions",
                                  params={"subject": subject, "purpose": "marketing_email"})
        assert still["allowed"] is True, "a forged or altered token changes nothing"
        clicked = await client.post(link, content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert clicked.status_code == 200
    assert "marknadsföring via e-post" in clicked.text, "the page names the purpose in words, not its id"

    async def suppressed() -> list[Any]:
        return [c for s, c, subj in systems.received
                if subj == subject and s == "marketing_email" and c["action"] == "suppress"]

    commands = await wait_until(suppressed, timeout=30, what="marketing_email to be told to suppress")
    assert {c["purpose"] for c in commands} == {"marketing_email"}
    status, consents = await get_json(f"{system['consent'].url}/v1/subjects/{subject}/consents")
    assert status == 200
    assert any(h["channel"] == "email_footer" and not h["granted"] for h in consents["history"])

    # The next marketing email is not sent; a transactional notice (a merger) still reaches them.
    await publish(bootstrap, NOTIFICATION_REQUESTED, newsletter.model_copy(
        update={"notification_id": f"newsletter:2026-12:{subject}"}), subject=subject)
    await publish(bootstrap, NOTIFICATION_REQUESTED, NotificationRequested(
        notification_id=f"merger:footer-check:{subject}", template="merger_notice", category="transactional",
        locale="sv", params={"kind": "merger", "counterparty": "Other AB", "effective_date": "2027-01-01",
                             "data_categories": ["contact"], "notice_url": "https://www.isopartner.se/merger"}),
        subject=subject)
    await wait_until(lambda: _async(len(_mails_to(stack.endpoints.mail_dir, address)) >= 2), timeout=30,
                     what="the merger notice")
    await asyncio.sleep(2)
    subjects = [str(m["Subject"]) for m in _mails_to(stack.endpoints.mail_dir, address)]
    assert len(subjects) == 2, subjects


async def _async(value: Any) -> Any:
    return value
