"""The privacy center end to end, in a real headless Chromium against the real services, broker,
database and SMTP sink: what a person does, and what reaches the systems."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zipfile
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from privacy_runtime.tokens import MANAGE, UNSUBSCRIBE, TokenSigner
from schemas.events import DsarDetails, DsarRequested
from schemas.topics import (
    CONSENT_CHANGED,
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    NOTIFICATION_REQUESTED,
    PRIVACY_AUDIT,
    command_topic,
)
from tests.browser_kit import PHONE, assert_accessible, new_page, screenshot
from tests.helpers import (
    TEST_MASTER_KEY,
    ExternalSystems,
    ServiceProcess,
    event_of,
    get_json,
    publish,
    read_topic,
    wait_for_messages,
    wait_until,
)
from tests.privacy_center.conftest import center_env
from tests.privacy_center.support import body_of, code_for, mails_to, register, sign_in, sign_in_links

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def _data(message: Any) -> dict[str, Any]:
    event = event_of(message)
    return dict(event["data"]) if event else {}


def _subject_is(subject: str) -> Any:
    return lambda m: (event_of(m) or {}).get("subject") == subject


async def test_a_swedish_person_signs_in_switches_marketing_and_asks_for_a_csv_copy(
        stack: Stack, center_system: CenterSystem, systems: ExternalSystems, desktop_page: Any) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    center = center_system.center.url
    subject, address = await register(stack, center_system.consent.url, locale="sv", prefix="pc-sv")
    page = desktop_page
    await page.goto(f"{center}/")
    assert await page.get_attribute("html", "lang") == "sv"
    await page.fill("#email", address)
    await page.click("form[action='/'] button[type=submit]")
    await page.wait_for_url(f"{center}/sent")
    link = (await sign_in_links(stack, address))[0]
    assert "inloggningslänk" in str(mails_to(stack, address)[0]["Subject"]).lower()

    await page.goto(link)
    await page.click("form button[type=submit]")
    await page.wait_for_url(f"{center}/me")
    assert subject not in page.url
    assert await page.is_checked("input[name=marketing_email][value=on]")

    # Off: a withdrawal on the preference center's channel, and the marketing system is told to suppress.
    await page.check("input[name=marketing_email][value=off]")
    await page.click("form[action='/me/consents'] button[type=submit]")
    await page.wait_for_url(f"{center}/done")
    changes = await wait_for_messages(bootstrap, CONSENT_CHANGED, _subject_is(subject), timeout=60)
    assert [(_data(m)["purpose"], _data(m)["granted"], _data(m)["channel"]) for m in changes] == \
        [("marketing_email", False, "preference_center")]
    await wait_for_messages(bootstrap, command_topic("marketing_email"),
                            lambda m: _subject_is(subject)(m) and _data(m).get("action") == "suppress"
                            and _data(m).get("purpose") == "marketing_email", timeout=60)

    async def shows(value: str) -> bool:
        await page.goto(f"{center}/me")
        return bool(await page.is_checked(f"input[name=marketing_email][value={value}]"))

    await wait_until(lambda: shows("off"), timeout=30, what="the page to show marketing off")
    # On again.
    await page.check("input[name=marketing_email][value=on]")
    await page.click("form[action='/me/consents'] button[type=submit]")
    await page.wait_for_url(f"{center}/done")
    await wait_for_messages(bootstrap, CONSENT_CHANGED, _subject_is(subject), count=2, timeout=60)
    await wait_for_messages(bootstrap, command_topic("marketing_email"),
                            lambda m: _subject_is(subject)(m) and _data(m).get("action") == "unsuppress",
                            timeout=60)

    # A copy as CSV.
    await page.goto(f"{center}/me")
    await page.check("#form-access input[name=format][value=csv]")
    await page.click("#form-access button[type=submit]")
    await page.wait_for_url(f"{center}/done")
    asked = await wait_for_messages(bootstrap, DSAR_REQUESTED, _subject_is(subject), timeout=60)
    data = _data(asked[0])
    assert (data["right"], data["details"]["format"], data["identity_verified"], data["requested_via"]) == \
        ("access", "csv", True, "web_form")

    async def listed() -> bool:
        await page.goto(f"{center}/me")
        return await page.locator(".requests > li").count() == 1

    await wait_until(listed, timeout=60, what="the request to be listed on the person's page")
    await screenshot(page, "me-with-request", "sv")
    await assert_accessible(page)

    # The sign-in link was used once: a replay is refused.
    replay = await page.goto(link)
    assert replay is not None and replay.status == 410
    status, body = await get_json(f"{center_system.dsar.url}/v1/requests/{data['request_id']}")
    assert status == 200 and body["right"] == "access", json.dumps(body)

    # The copy arrives by email; its link downloads the package (a zip with the CSV files).
    async def export_mail() -> list[str]:
        found = [m.group(0) for mail in mails_to(stack, address)
                 for m in [re.search(r"https?://\S+/v1/exports/[A-Za-z0-9_-]+", body_of(mail))] if m]
        return found

    download = (await wait_until(export_mail, timeout=120, what="the email with the copy's link"))[0]
    async with httpx.AsyncClient(timeout=30) as client:
        package = await client.get(download)
        if not package.headers.get("content-type", "").startswith("application/zip"):
            package = await client.post(download)  # the contract's page: GET describes, POST downloads
    assert package.status_code == 200 and package.headers["content-type"].startswith("application/zip")
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        names = archive.namelist()
    assert any(name.endswith(".csv") for name in names), names

    async def completed() -> bool:
        await page.goto(f"{center}/me")
        return await page.locator(".requests .status").first.inner_text() == "Klar"

    await wait_until(completed, timeout=60, what="the page to show the request completed")

    # What the person did is in the privacy center's audit chain, published like every service's.
    audited = await wait_for_messages(
        bootstrap, PRIVACY_AUDIT, lambda m: _subject_is(subject)(m)
        and str((event_of(m) or {}).get("source", "")).endswith(":privacy_center"), count=4, timeout=60)
    actions = sorted(_data(m)["action"] for m in audited)
    assert actions == ["privacy_center_consents_changed", "privacy_center_consents_changed",
                       "privacy_center_request", "privacy_center_signed_in"], actions


async def _ask_by_email(stack: Any, subject: str, right: str = "access") -> str:
    """A request that came in by email: not verified, so the person is sent a code."""
    request_id = uuid.uuid4()
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=request_id, right=right, identity_verified=False, requested_via="email",  # type: ignore[arg-type]
        details=DsarDetails(format="json") if right == "access" else DsarDetails()), subject=subject)  # type: ignore[arg-type]
    return str(request_id)


async def test_an_english_person_who_asked_by_email_types_the_code_and_the_case_proceeds(
        stack: Stack, center_system: CenterSystem, browser: Any) -> None:
    subject, address = await register(stack, center_system.consent.url, locale="en", prefix="pc-en")
    request_id = await _ask_by_email(stack, subject)
    code = await code_for(stack, address)
    page = await new_page(browser, PHONE, locale="en-GB")
    try:
        await page.goto(f"{center_system.center.url}/verify/{request_id}")
        assert await page.get_attribute("html", "lang") == "en"
        wrong = "000000" if code != "000000" else "111111"
        await page.fill("#code", wrong)
        await page.click("main form button[type=submit]")
        assert "Wrong code" in await page.locator("#code-error").inner_text()
        await page.fill("#code", code)
        await page.click("main form button[type=submit]")
        assert "Thank you, it was you" in await page.locator("h1").inner_text()
    finally:
        await page.context.close()

    async def proceeding() -> bool:
        _, body = await get_json(f"{center_system.dsar.url}/v1/requests/{request_id}")
        return body.get("status") in ("in_progress", "awaiting_systems", "completed")

    await wait_until(proceeding, timeout=60, what="the case to proceed after the code")


async def test_an_unknown_address_gets_the_same_page_and_no_email(stack: Stack, center_system: CenterSystem) -> None:
    center = center_system.center.url
    _, known = await register(stack, center_system.consent.url, locale="sv", prefix="pc-known")
    unknown = f"nobody-{uuid.uuid4().hex[:10]}@example.org"
    answers = []
    for address in (unknown, known):
        async with httpx.AsyncClient(base_url=center) as client:
            page = await client.get("/")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            posted = await client.post("/", data={"csrf_token": token.group(1), "email": address})
            assert posted.status_code == 303 and posted.headers["location"] == "/sent"
            answers.append((await client.get("/sent")).text)
    assert answers[0] == answers[1], "the answer says nothing about whether the address is known"
    await sign_in_links(stack, known)  # the known one's email arrived, so the unknown one's would have too
    assert mails_to(stack, unknown) == []
    notifications = await read_topic(stack.endpoints.kafka_bootstrap, NOTIFICATION_REQUESTED)
    assert not any(unknown in (m.value or b"").decode(errors="replace") for m in notifications)


async def test_forms_without_their_csrf_token_are_refused(stack: Stack, center_system: CenterSystem, desktop_page: Any) -> None:
    center = center_system.center.url
    subject, address = await register(stack, center_system.consent.url, locale="sv", prefix="pc-csrf")
    await sign_in(desktop_page, stack, center, address)
    cookies = {c["name"]: c["value"] for c in await desktop_page.context.cookies()}
    async with httpx.AsyncClient(base_url=center, cookies=cookies) as client:
        assert (await client.get("/me")).status_code == 200, "the session cookie works outside the browser"
        for path, form in [("/me/consents", {"submission": str(uuid.uuid4()), "marketing_email": "off"}),
                           ("/me/requests", {"submission": str(uuid.uuid4()), "right": "erasure",
                                             "ground": "consent_withdrawn"}),
                           ("/", {"email": address}), ("/sign-out", {})]:
            refused = await client.post(path, data=form)
            assert refused.status_code == 403, path
            forged = await client.post(path, data={**form, "csrf_token": "forged"})
            assert forged.status_code == 403, path
        assert (await client.get("/me")).status_code == 200, "the refused sign-out did not sign out"
    # A form from another site carries no cookie (SameSite) and no token: nothing happened.
    consents = await read_topic(stack.endpoints.kafka_bootstrap, CONSENT_CHANGED)
    assert not [m for m in consents if _subject_is(subject)(m)]
    erasures = await read_topic(stack.endpoints.kafka_bootstrap, ERASURE_REQUESTED)
    assert not [m for m in erasures if _subject_is(subject)(m)]
    assert len(mails_to(stack, address)) == 1, "only the sign-in link the test asked for"


async def test_the_footer_link_opens_a_session_and_a_forged_one_does_not(stack: Stack, center_system: CenterSystem) -> None:
    subject, _ = await register(stack, center_system.consent.url, locale="en", prefix="pc-manage")
    signer = TokenSigner(base64.b64decode(TEST_MASTER_KEY), MANAGE)
    token = signer.sign({"s": subject})
    async with httpx.AsyncClient(base_url=center_system.center.url, headers={"Accept-Language": "en"}) as client:
        opened = await client.get(f"/manage/{token}")
        assert opened.status_code == 303 and opened.headers["location"] == "/me"
        me = await client.get("/me")
        assert me.status_code == 200 and "Marketing by email" in me.text and subject not in me.text
    other = signer.sign({"s": f"{subject}-other"})
    _, stamp, signature = token.split(".")
    forged = f"{other.split('.')[0]}.{stamp}.{signature}"  # this signature on a payload naming someone else
    unsubscribe = TokenSigner(base64.b64decode(TEST_MASTER_KEY), UNSUBSCRIBE).sign({"s": subject})
    async with httpx.AsyncClient(base_url=center_system.center.url) as client:
        for bad in (forged, unsubscribe, "x" * 3000):
            refused = await client.get(f"/manage/{bad}")
            assert refused.status_code == 404, bad[:40]
            assert (await client.get("/me")).status_code == 401


async def test_the_email_form_is_rate_limited_per_address(stack: Stack, center_system: CenterSystem) -> None:
    limited = ServiceProcess("privacy_center", stack.env())
    limited.extra_env = {**center_env(center_system, limited), "EMAIL_LIMIT_PER_ADDRESS": "2"}
    limited.start()
    try:
        await limited.wait_ready(timeout=90)
        _, address = await register(stack, center_system.consent.url, locale="sv", prefix="pc-limit")
        statuses = []
        async with httpx.AsyncClient(base_url=limited.url) as client:
            page = await client.get("/")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            for _ in range(3):
                answer = await client.post("/", data={"csrf_token": token.group(1), "email": address.upper()})
                statuses.append(answer.status_code)
            other = await client.post("/", data={"csrf_token": token.group(1), "email": f"x{address}"})
        assert statuses == [303, 303, 429], "the address is normalised before it is counted"
        assert other.status_code == 303, "another address is not held back"
        await sign_in_links(stack, address, count=2)
    finally:
        limited.stop()


async def test_a_session_ends_at_sign_out_and_after_30_idle_minutes_cookie_or_not(stack: Stack, center_system: CenterSystem) -> None:
    subject, _ = await register(stack, center_system.consent.url, locale="sv", prefix="pc-session")
    token = TokenSigner(base64.b64decode(TEST_MASTER_KEY), MANAGE).sign({"s": subject})
    center = center_system.center.url
    async with httpx.AsyncClient(base_url=center) as client:
        assert (await client.get(f"/manage/{token}")).status_code == 303
        me = await client.get("/me")
        assert me.status_code == 200
        kept = dict(client.cookies)  # what someone who copied the cookie would hold
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', me.text)
        assert csrf
        out = await client.post("/sign-out", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/signed-out"
        assert (await client.get("/me")).status_code == 401
    async with httpx.AsyncClient(base_url=center, cookies=kept) as replay:
        assert (await replay.get("/me")).status_code == 401, "the session ended in the database, not just the cookie"

    async with httpx.AsyncClient(base_url=center) as client:
        assert (await client.get(f"/manage/{token}")).status_code == 303
        assert (await client.get("/me")).status_code == 200
        conn = await asyncpg.connect(stack.endpoints.database_url)
        try:
            await conn.execute("UPDATE privacy_center.sessions SET last_seen = now() - interval '31 minutes' "
                               "WHERE subject = $1 AND ended_at IS NULL", subject)
        finally:
            await conn.close()
        assert (await client.get("/me")).status_code == 401, "30 idle minutes end the session"
