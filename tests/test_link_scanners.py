"""Link scanners (mail filters that fetch every URL in a message, with HEAD or GET) must change nothing:
through all three services, a real broker, database and SMTP server, the unsubscribe link and the
export link as they arrive by email. GET and HEAD show a page in the person's language; only the page's
button (a POST) acts, and a repeated unsubscribe POST writes nothing more."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from hashlib import sha256
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from privacy_runtime.pages.security import CONTENT_SECURITY_POLICY
from schemas.events import (
    ConsentChanged,
    DsarDetails,
    DsarRequested,
    NotificationRequested,
)
from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, NOTIFICATION_REQUESTED
from tests.helpers import ExternalSystems, ServiceProcess, get_json, publish, subject_id, wait_until
from tests.test_policy_scenarios import _mails_to, register_for_marketing

pytestmark = pytest.mark.stack

SCANS = 5
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


async def _marketing_allowed(system: dict[str, ServiceProcess], subject: str) -> bool:
    _, body = await get_json(f"{system['consent'].url}/v1/decisions",
                             params={"subject": subject, "purpose": "marketing_email"})
    return bool(body["allowed"])


async def _scalar(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def _assert_page(response: httpx.Response, lang: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert f'<html lang="{lang}">' in response.text
    assert '<link rel="stylesheet" href="static/pages.css">' in response.text
    assert "<script" not in response.text


async def test_scanning_the_unsubscribe_link_changes_nothing_and_one_post_withdraws_once(
    stack: Stack, system: dict[str, ServiceProcess], systems: ExternalSystems
) -> None:
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    subject = subject_id("scan-unsub")
    address = await register_for_marketing(stack, system, subject, "Sara Skanner", "sv")
    await publish(bootstrap, NOTIFICATION_REQUESTED, NotificationRequested(
        notification_id=f"newsletter:scan:{subject}", template="policy_changed", category="marketing", locale="sv",
        params={"version": "2026-12", "effective_date": "2027-01-01", "summary_sv": "Nyheter", "summary_en": "News",
                "url": "https://www.isopartner.se/nyheter"}), subject=subject)
    mails = await wait_until(lambda: _async(_mails_to(stack.endpoints.mail_dir, address)), timeout=60,
                             what="the marketing email")
    link = str(mails[0]["List-Unsubscribe"]).strip("<>")
    text = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert link in text and "Hantera din integritet" in text and "/manage/" in text

    async with httpx.AsyncClient(timeout=10.0) as client:
        for _ in range(SCANS):
            head = await client.head(link)
            assert head.status_code == 200 and head.content == b""
            page = await client.get(link)
            _assert_page(page, "sv")
            assert "Ja, avregistrera mig" in page.text and 'method="post"' in page.text
            assert "marknadsföring via e-post" in page.text, "the purpose in words, in the email's language"
            assert 'href="http://localhost:6069"' in page.text, "the way to the privacy center"
        english = await client.get(link, params={"lang": "en"})
        _assert_page(english, "en")
        assert "Yes, unsubscribe me" in english.text
        stylesheet = await client.get(link.rsplit("/", 1)[0] + "/static/pages.css")
        assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")

        # Nothing was written: a withdrawal is recorded in the same transaction as the click's audit entry.
        clicked = "SELECT count(*) FROM consent.audit_log WHERE subject = $1 AND action = 'unsubscribe_clicked'"
        assert await _scalar(dsn, clicked, subject) == 0
        assert await _marketing_allowed(system, subject), "five HEADs and five GETs left the consent as it was"

        first = await client.post(link, **ONE_CLICK)  # RFC 8058 one-click, as a mail client sends it
        assert first.status_code == 200 and "Du har avregistrerats" in first.text
        assert await _scalar(dsn, clicked, subject) == 1

        async def withdrawn() -> bool:
            return not await _marketing_allowed(system, subject)

        await wait_until(withdrawn, what="the withdrawal to reach the ledger")

        async def suppressed() -> list[Any]:
            return [c for s, c, who in systems.received
                    if who == subject and s == "marketing_email" and c["action"] == "suppress"]

        await wait_until(suppressed, timeout=60, what="marketing_email to be told to suppress")
        claims = await _scalar(dsn, "SELECT count(*) FROM consent.footer_withdrawals")
        for again in (await client.post(link, **ONE_CLICK), await client.post(link)):  # one-click, the button
            assert again.status_code == 200 and "Du har avregistrerats" in again.text
        after_scan = await client.get(link)
        assert "Du samtycker redan inte till marknadsföring via e-post" in after_scan.text
    assert await _scalar(dsn, clicked, subject) == 1, "a repeated POST writes nothing more"
    assert await _scalar(dsn, "SELECT count(*) FROM consent.footer_withdrawals") == claims

    # A later change of the same person, through the same topic, is applied after anything the repeated
    # POSTs could have published: then the ledger still holds one footer withdrawal and one command.
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="analytics", granted=True, channel="preference_center", policy_version="2021-10-30"), subject=subject)

    async def barrier() -> bool:
        _, body = await get_json(f"{system['consent'].url}/v1/decisions", params={"subject": subject,
                                                                                  "purpose": "analytics"})
        return bool(body["allowed"])

    await wait_until(barrier, what="the later change to be applied")
    footer_rows = ("SELECT count(*) FROM consent.consent_ledger WHERE subject = $1 AND channel = 'email_footer' "
                   "AND purpose = 'marketing_email'")
    assert await _scalar(dsn, footer_rows, subject) == 1, "one ledger row"
    commands = {c["command_id"] for s, c, who in systems.received
                if who == subject and s == "marketing_email" and c["action"] == "suppress"}
    assert len(commands) == 1, "one command"


async def test_scanning_the_export_link_uses_up_nothing_and_each_post_is_one_download(
    stack: Stack, system: dict[str, ServiceProcess], systems: ExternalSystems
) -> None:
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    subject = subject_id("scan-export")
    address = await register_for_marketing(stack, system, subject, "Sara Skanner", "sv")
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.uuid4(), right="access", identity_verified=True, requested_via="web_form",
        details=DsarDetails()), subject=subject)

    async def export_email() -> list[Any]:
        return [m for m in _mails_to(stack.endpoints.mail_dir, address) if "klara att hämta" in str(m["Subject"])]

    mail = (await wait_until(export_email, timeout=120, interval=0.5, what="the export email"))[0]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    found = re.search(r"(http\S+/v1/exports/\S+)", text)
    assert found, text
    link = found.group(1)
    assert link.endswith("?lang=sv"), "the page opens in the email's language"
    token = link.split("/v1/exports/", 1)[1].split("?", 1)[0]
    left = "SELECT downloads_left FROM dsar.exports WHERE token_hash = $1"
    token_hash = sha256(token.encode()).hexdigest()
    assert await _scalar(dsn, left, token_hash) == 3

    async with httpx.AsyncClient(timeout=30.0) as client:
        for _ in range(SCANS):
            head = await client.head(link)
            assert head.status_code == 200 and head.content == b""
            page = await client.get(link)
            _assert_page(page, "sv")
            assert "Hämta zip-filen" in page.text and 'method="post"' in page.text
            assert "<dt>Hämtningar kvar</dt><dd>3</dd>" in page.text
            assert "Länken gäller till" in page.text and "index.html" in page.text
        assert await _scalar(dsn, left, token_hash) == 3, "five HEADs and five GETs left the downloads as they were"
        english = await client.get(link.replace("lang=sv", "lang=en"))
        _assert_page(english, "en")
        assert "<dt>Downloads left</dt><dd>3</dd>" in english.text

        download = await client.post(link)
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        assert download.headers["X-Downloads-Left"] == "2"
        archive = zipfile.ZipFile(io.BytesIO(download.content))
        report = archive.read(archive.namelist()[0]).decode()
        assert archive.namelist()[0].endswith("/index.html") and '<html lang="sv">' in report
        assert await _scalar(dsn, left, token_hash) == 2, "a POST counts one download"
        assert "<dt>Hämtningar kvar</dt><dd>2</dd>" in (await client.get(link)).text

        assert (await client.post(link)).status_code == 200
        assert (await client.post(link)).status_code == 200
        used_up = await client.post(link, headers={"Accept": "text/html"})  # the button, in a browser
        assert used_up.status_code == 410 and "redan hämtats" in used_up.text
        assert (await client.head(link)).status_code == 410


async def _async(value: Any) -> Any:
    return value
