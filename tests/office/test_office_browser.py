"""The privacy office in a real headless Chromium against the real services (Kafka, PostgreSQL, SMTP):
an operator takes in requests and opt-outs received by email, works the queue (rejects an objection
with a reason, extends a deadline, bulk-approves retention erasures), re-sends to a system that never
answers, replays nothing it should not, and sees a tampered audit row. Every page is visited in Swedish
and in English on a phone (360 px) and a desktop (1280 px), screenshot into var/screenshots/ (`make screenshots`) and checked
with axe-core (0 violations) and for the absence of script; an operator switches language in the middle
of a case and goes on with the same case."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.smtp_sink import read_messages
from devstack.stack import Stack
from schemas.enums import ErasureGround, ObjectionProcessing, RequestedVia, Right
from schemas.events import DsarDetails, DsarRequested, ErasureRequested, UserRegistered
from schemas.topics import DSAR_REQUESTED, ERASURE_REQUESTED, USER_REGISTERED, command_topic
from tests.browser_kit import DESKTOP, PHONE, assert_accessible, assert_no_script, new_page, screenshot
from tests.helpers import (
    TEST_ADMIN_TOKEN,
    ServiceProcess,
    event_of,
    publish,
    read_topic,
    subject_id,
    wait_until,
)

pytestmark = [pytest.mark.stack, pytest.mark.browser]

TOKEN = "anna-personal-office-token"
OPERATORS = f"anna:{hashlib.sha256(TOKEN.encode()).hexdigest()}"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
#: Commands are overdue this soon, so a system that never answers shows as overdue within the test; the
#: automatic re-send waits an hour, so a re-send seen is the operator's.
FAST_COMMANDS = {"COMMAND_RESPOND_WITHIN_SECONDS": "8", "COMMAND_RESEND_BASE_SECONDS": "3600",
                 "COMMAND_RESEND_MAX_SECONDS": "3600", "COMMAND_CHECK_SECONDS": "1"}


@pytest.fixture(scope="module")
async def office(stack: Stack) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = stack.env()
    consent = ServiceProcess("consent", env, FAST_COMMANDS).start()
    dsar = ServiceProcess("dsar", env, FAST_COMMANDS).start()
    notifier = ServiceProcess("notifier", env, {"CONSENT_BASE_URL": consent.url,
                                                "CONSENT_PUBLIC_URL": consent.url}).start()
    running = {"consent": consent, "dsar": dsar, "notifier": notifier}
    try:
        for service in running.values():
            await service.wait_ready(timeout=120)
        console = ServiceProcess("office", env, {
            "OFFICE_OPERATORS": OPERATORS, "DSAR_URL": dsar.url, "CONSENT_URL": consent.url,
            "NOTIFIER_URL": notifier.url}).start()
        running["office"] = console
        await console.wait_ready(timeout=120)
        yield running
    finally:
        for service in running.values():
            service.stop()


# --- helpers -------------------------------------------------------------------------------------------


async def check(page: Any, name: str) -> None:
    """No-script check, screenshot and axe-core of the page as it is now (axe marks up the page it checks,
    so the markup is read first). The screenshot is named for the page's language and width."""
    assert_no_script(await page.content())
    await screenshot(page, f"office-{name}", await page.get_attribute("html", "lang") or "none")
    await assert_accessible(page)


async def sign_in(page: Any, office: dict[str, ServiceProcess], token: str = TOKEN, lang: str = "en") -> None:
    """Sign in, choosing the language on the sign-in page (remembered for the pages after it)."""
    await page.goto(f"{office['office'].url}/sign-in?lang={lang}")
    await page.fill("#token", token)
    await page.click("main button[type=submit]")


async def register(stack: Any, office: dict[str, ServiceProcess], *, email: str | None = None) -> tuple[str, str]:
    subject = subject_id("off")
    email = email or f"{subject}@office-test.example"
    await publish(stack.endpoints.kafka_bootstrap, USER_REGISTERED,
                  UserRegistered(email=email, locale="en", country="SE"), subject=subject)

    async def known() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(f"{office['notifier'].url}/v1/admin/subjects/lookup", headers=ADMIN,
                                       json={"email": email})
        return subject in answer.json().get("subjects", [])

    await wait_until(known, timeout=60, what=f"{subject} in the notifier's directory")
    return subject, email


async def admin_case(office: dict[str, ServiceProcess], request_id: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"{office['dsar'].url}/v1/admin/requests/{request_id}", headers=ADMIN)
    return answer.json() if answer.status_code == 200 else None


async def wait_case(office: dict[str, ServiceProcess], request_id: str, what: str, **fields: Any) -> dict[str, Any]:
    async def matches() -> dict[str, Any] | None:
        case = await admin_case(office, request_id)
        if case is not None and all(case.get(k) == v for k, v in fields.items()):
            return case
        return None

    return await wait_until(matches, timeout=60, what=what)


async def mail_to(stack: Any, email: str, needle: str) -> list[str]:
    """Plain-text bodies of the messages to `email` that contain `needle` (waited for)."""

    async def found() -> list[str]:
        bodies = []
        for msg in read_messages(stack.endpoints.mail_dir, containing=email):
            body = msg.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            if needle in text:
                bodies.append(text)
        return bodies

    return await wait_until(found, timeout=60, what=f"an email to {email} containing {needle!r}")


# --- sign-in and refusals ------------------------------------------------------------------------------


async def test_wrong_token_missing_csrf_and_signed_out_browser_are_refused(office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    url = office["office"].url
    answer = await page.goto(f"{url}/cases")
    assert page.url.endswith("/sign-in")  # a signed-out browser is sent to sign in
    await check(page, "sign-in")
    await sign_in(page, office, "not-a-token")
    assert await page.locator("[role=alert]").inner_text() == "That token is not valid."
    # A signed-out browser posting an action (with the sign-in page's valid CSRF token) is refused.
    csrf = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = await page.request.post(f"{url}/cases/{uuid.uuid4()}/approve", form={"csrf_token": csrf or ""})
    assert answer.status == 403
    await sign_in(page, office)
    assert page.url == f"{url}/"
    # Signed in, but a form without its CSRF token is refused.
    answer = await page.request.post(f"{url}/cases/{uuid.uuid4()}/approve", form={"reason": "x"})
    assert answer.status == 403
    answer = await page.request.post(f"{url}/cases/{uuid.uuid4()}/approve",
                                     form={"csrf_token": "forged-token-value"})
    assert answer.status == 403
    # Sign-out ends the session: the same browser is signed out again.
    await page.click("text=Sign out")
    assert page.url.endswith("/sign-in")
    answer = await page.goto(f"{url}/audit")
    assert page.url.endswith("/sign-in") and answer is not None


# --- intake --------------------------------------------------------------------------------------------


async def test_an_erasure_request_received_by_email_is_recorded(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    subject, email = await register(stack, office)
    await sign_in(page, office)
    await page.goto(f"{office['office'].url}/intake")
    await check(page, "intake")
    await page.fill("#req-email", email.upper())  # found however the address is written
    await page.check("input[name=requested_via][value=email]")
    await page.select_option("#req-right", "erasure")
    await page.select_option("#req-ground", "consent_withdrawn")
    await page.click("text=Record the request")
    notice = await page.locator("[role=status]").inner_text()
    assert "Request recorded (erasure, email)" in notice
    request_id = notice.rsplit("Case ", 1)[1].rstrip(".")
    case = await wait_case(office, request_id, "the erasure case waiting for identity", status="identity_pending")
    assert case["subject"] == subject and case["requested_via"] == "email" and not case["identity_verified"]
    # The person is sent a code to confirm the request is theirs.
    await mail_to(stack, email, request_id)
    await page.goto(f"{office['office'].url}/cases?q={request_id}")
    assert await page.locator(f"a[href='/cases/{request_id}']").count() == 1
    await check(page, "cases-search")
    # The intake is in the office's audit chain under the operator's name.
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        row = await conn.fetchrow("SELECT actor, detail FROM office.audit_log WHERE ref = $1", request_id)
    finally:
        await conn.close()
    assert row is not None and row["actor"] == "operator:anna"
    assert json.loads(row["detail"])["requested_via"] == "email"


async def test_an_opt_out_received_by_email_reaches_the_marketing_system(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    subject, email = await register(stack, office)
    await sign_in(page, office)
    await page.goto(f"{office['office'].url}/intake")
    await page.fill("#out-email", email)
    await page.click("text=Record the opt-out")
    assert "Opt-out recorded" in await page.locator("[role=status]").inner_text()

    def suppress(message: Any) -> bool:
        event = event_of(message) or {}
        data = event.get("data") or {}
        return event.get("subject") == subject and data.get("action") == "suppress" \
            and data.get("purpose") == "marketing_email"

    async def commanded() -> bool:
        return any(suppress(m) for m in await read_topic(stack.endpoints.kafka_bootstrap,
                                                         command_topic("marketing_email")))

    await wait_until(commanded, timeout=60, what="suppress on privacy-commands.marketing_email")


# --- the queue -------------------------------------------------------------------------------------------


async def test_an_objection_is_rejected_with_a_reason(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    subject, email = await register(stack, office)
    request_id = str(uuid.uuid4())
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.UUID(request_id), right=Right.OBJECTION, identity_verified=True,
        requested_via=RequestedVia.WEB_FORM,
        details=DsarDetails(processing=ObjectionProcessing.LEGITIMATE_INTEREST)), subject=subject)
    await wait_case(office, request_id, "the objection waiting for review", manual_review=True)
    await sign_in(page, office)
    await page.goto(f"{office['office'].url}/cases?review=true&right=objection")
    await check(page, "cases-review")
    await page.click(f"a[href='/cases/{request_id}']")
    await check(page, "case-objection")
    await page.select_option("#ground", "legitimate_grounds")
    await page.fill("#reject-reason", "Fraud prevention on your account needs the login history.")
    await page.click("form[action$='/reject'] button")
    assert "Rejected" in await page.locator("[role=status]").inner_text()
    case = await wait_case(office, request_id, "the objection rejected", status="rejected")
    assert "Compelling legitimate grounds" in case["reason"] and "Fraud prevention" in case["reason"]
    bodies = await mail_to(stack, email, "Fraud prevention on your account")
    assert any("imy.se" in body.lower() for body in bodies)  # the person is told they may complain to IMY
    # The timeline says who rejected it.
    await page.reload()
    row = page.locator("tr", has_text="Operator rejected")
    assert "anna" in await row.inner_text()


async def test_a_deadline_is_extended_and_a_silent_system_re_sent_to(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    subject, email = await register(stack, office)
    request_id = str(uuid.uuid4())
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.UUID(request_id), right=Right.ACCESS, identity_verified=True,
        requested_via=RequestedVia.WEB_FORM), subject=subject)
    before = await wait_case(office, request_id, "the access request waiting for systems", status="awaiting_systems")
    await sign_in(page, office)
    url = office["office"].url
    await page.goto(f"{url}/cases/{request_id}")
    await page.check("input[name=months][value='2']")
    await page.fill("#extend-reason", "Twelve systems hold your data and two of them answer slowly.")
    await page.click("form[action$='/extend'] button")
    assert "Deadline extended" in await page.locator("[role=status]").inner_text()
    after = await wait_case(office, request_id, "the extended case", extended=True)
    assert after["extension_months"] == 2
    moved = datetime.fromisoformat(after["due_at"]) - datetime.fromisoformat(before["due_at"])
    assert moved.days >= 58  # two calendar months later
    await mail_to(stack, email, "Twelve systems hold your data")
    await check(page, "case-extended")

    # Nothing answers the access request's exports: past respond_by, the systems show as overdue.
    async def overdue_on_page() -> bool:
        await page.goto(f"{url}/systems")
        return await page.locator("#system-accounts .flag-bad").count() == 1

    await wait_until(overdue_on_page, timeout=60, what="accounts marked overdue on /systems")
    await check(page, "systems")
    bootstrap = stack.endpoints.kafka_bootstrap

    async def exports_to_accounts() -> list[Any]:
        return [m for m in await read_topic(bootstrap, command_topic("accounts"))
                if ((event_of(m) or {}).get("data") or {}).get("request_id") == request_id]

    sent = await wait_until(exports_to_accounts, what="the export command to accounts")
    await page.click("#system-accounts button")
    assert "re-sent now" in await page.locator("[role=status]").inner_text()
    await check(page, "systems-accounts")

    async def re_sent() -> bool:
        return len(await exports_to_accounts()) > len(sent)

    await wait_until(re_sent, timeout=30, what="the same command re-sent to accounts")
    again = await exports_to_accounts()
    assert {(event_of(m) or {})["data"]["command_id"] for m in again} == \
        {(event_of(m) or {})["data"]["command_id"] for m in sent}  # the same command, not a new one
    # Re-send to one system from the case page is audited under the operator's name too.
    await page.goto(f"{url}/cases/{request_id}")
    await page.select_option("#system", "billing")
    await page.click("form[action$='/resend'] button")
    assert "re-sent to Billing and bookkeeping" in await page.locator("[role=status]").inner_text()
    assert "anna" in await page.locator("tr", has_text="Operator re-sent commands").first.inner_text()


async def test_three_retention_erasures_are_approved_at_once(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    ids = []
    for _ in range(3):
        # Nobody the services saw lately (a registration now would cancel the erasure as "active again").
        subject = subject_id("inactive")
        request_id = str(uuid.uuid4())
        ids.append(request_id)
        await publish(stack.endpoints.kafka_bootstrap, ERASURE_REQUESTED, ErasureRequested(
            request_id=uuid.UUID(request_id), ground=ErasureGround.RETENTION_EXPIRED, identity_verified=True,
            requested_via=RequestedVia.INTERNAL), subject=subject)
    for request_id in ids:
        await wait_case(office, request_id, "a retention erasure waiting for review", manual_review=True)
    await sign_in(page, office)
    await page.goto(f"{office['office'].url}/cases?review=true&right=erasure")
    for request_id in ids:
        await page.check(f"#pick-{request_id}")
    await page.click("form[action='/cases/approve'] button:text('Approve')")
    assert "Approved 3 of 3." in await page.locator("[role=status]").inner_text()
    for request_id in ids:
        await wait_case(office, request_id, "the approved erasure sent to the systems", status="awaiting_systems")


# --- overview, dead letters, audit ------------------------------------------------------------------------


async def test_overview_and_dead_letters_pages(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    # A message no service can read: dead-lettered, shown without its payload.
    from tests.helpers import publish_raw

    secret = f"payload-{uuid.uuid4().hex}"
    await publish_raw(stack.endpoints.kafka_bootstrap, USER_REGISTERED, b"broken-key", secret.encode())
    await sign_in(page, office)
    url = office["office"].url

    async def listed() -> bool:
        await page.goto(f"{url}/dead-letters")
        return await page.locator("td", has_text="broken-key").count() > 0

    await wait_until(listed, timeout=60, what="the dead letter on /dead-letters")
    assert secret not in await page.content()
    await check(page, "dead-letters")
    await page.goto(f"{url}/")
    assert await page.locator("svg[role=img]").count() == 2
    assert "user-registered.dlq" in await page.content()
    await check(page, "overview")


async def test_the_audit_page_shows_a_tampered_row(stack: Stack, office: dict[str, ServiceProcess], desktop_page: Any) -> None:
    page = desktop_page
    request_id = str(uuid.uuid4())  # a case, so that the dsar chain has rows of its own to tamper with
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.UUID(request_id), right=Right.OBJECTION, identity_verified=True,
        requested_via=RequestedVia.WEB_FORM,
        details=DsarDetails(processing=ObjectionProcessing.LEGITIMATE_INTEREST)), subject=subject_id("audit"))
    await wait_case(office, request_id, "a case to tamper with", manual_review=True)
    await sign_in(page, office)
    url = office["office"].url
    await page.goto(f"{url}/audit")
    await page.click("form[action='/audit/verify'] button")
    assert await page.locator("#chain-dsar .flag-ok").count() == 1
    await check(page, "audit")
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        seq, actor = await conn.fetchrow("SELECT seq, actor FROM dsar.audit_log WHERE ref = $1 ORDER BY seq LIMIT 1",
                                         request_id)
        # The trail refuses updates; someone with the database owner's rights can still switch that off.
        await conn.execute("ALTER TABLE dsar.audit_log DISABLE TRIGGER audit_log_no_update")
        await conn.execute("UPDATE dsar.audit_log SET actor = 'mallory' WHERE seq = $1", seq)
        try:
            await page.goto(f"{url}/audit")
            await page.click("form[action='/audit/verify'] button")
            assert "Every chain verified now." in await page.locator("[role=status]").inner_text()
            cell = await page.locator("#chain-dsar").inner_text()
            assert "broken" in cell and f"row {seq}:" in cell and "mallory" in cell
            await check(page, "audit-broken")
        finally:
            await conn.execute("UPDATE dsar.audit_log SET actor = $2 WHERE seq = $1", seq, actor)
            await conn.execute("ALTER TABLE dsar.audit_log ENABLE TRIGGER audit_log_no_update")
    finally:
        await conn.close()
    await page.goto(f"{url}/audit")
    await page.click("form[action='/audit/verify'] button")
    assert await page.locator("#chain-dsar .flag-ok").count() == 1



# --- both languages ----------------------------------------------------------------------------------------

#: What each page says in each language (its first heading), so a page in the wrong language fails.
HEADINGS = {
    "sign-in": {"sv": "Logga in på dataskyddskontoret", "en": "Sign in to the privacy office"},
    "overview": {"sv": "Kontoret i korthet", "en": "The office at a glance"},
    "cases": {"sv": "Ärenden", "en": "Cases"},
    "case": {"sv": "Ärende ", "en": "Case "},
    "intake": {"sv": "Inkommet", "en": "Intake"},
    "intake-refused": {"sv": "Inkommet", "en": "Intake"},
    "systems": {"sv": "System", "en": "Systems"},
    "systems-accounts": {"sv": "System", "en": "Systems"},
    "dead-letters": {"sv": "Olästa meddelanden", "en": "Dead letters"},
    "audit": {"sv": "Granskningskedjor", "en": "Audit chains"},
    "audit-verified": {"sv": "Granskningskedjor", "en": "Audit chains"},
    "error": {"sv": "Något gick inte att göra", "en": "Something could not be done"},
}


async def objection_in_review(stack: Any, office: dict[str, ServiceProcess]) -> str:
    """An objection waiting for an operator: its page offers approve, reject and extend."""
    subject, _ = await register(stack, office)
    request_id = str(uuid.uuid4())
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.UUID(request_id), right=Right.OBJECTION, identity_verified=True,
        requested_via=RequestedVia.WEB_FORM,
        details=DsarDetails(processing=ObjectionProcessing.LEGITIMATE_INTEREST)), subject=subject)
    await wait_case(office, request_id, "the objection waiting for review", manual_review=True)
    return request_id


async def visit(page: Any, url: str, name: str, lang: str) -> None:
    """Open `url` (or take the page as it is), check it is in `lang`, then screenshot and axe-core it."""
    if url:
        answer = await page.goto(url)
        assert answer is not None and (answer.status < 400 or name == "error"), f"{url}: {answer and answer.status}"
    assert await page.get_attribute("html", "lang") == lang, f"{name} is not in {lang}"
    heading = await page.locator("main h1").inner_text()
    assert heading.startswith(HEADINGS[name][lang]), f"{name} ({lang}): {heading}"
    # The page fits the screen (longer Swedish words included): only the tables scroll, inside their frame.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{name} ({lang}) is {width} px wide"
    await check(page, f"{name}-both")


async def choose(page: Any, lang: str) -> None:
    """Choose the language on the switch at the top of the page the operator is on."""
    if await page.get_attribute("html", "lang") != lang:
        before = page.url.split("?")[0]
        await page.click(f".langs a[hreflang={lang}]")
        assert page.url.split("?")[0] == before  # the same page
    assert await page.get_attribute("html", "lang") == lang


async def signed_in_once(page: Any, url: str) -> None:
    """Sign in unless this browser is signed in already (the office allows 10 sign-ins per 5 minutes from
    one address, and this module's tests share one)."""
    await page.goto(f"{url}/")
    if page.url.endswith("/sign-in"):
        await page.fill("#token", TOKEN)
        await page.click("main button[type=submit]")
    assert page.url == f"{url}/"


@pytest.fixture(scope="module")
async def operator_page(office: dict[str, ServiceProcess], browser: Any) -> AsyncIterator[Any]:
    """One browser for the tours of both languages, whose own language is Swedish."""
    page = await new_page(browser, DESKTOP, locale="sv-SE")
    try:
        yield page
    finally:
        await page.context.close()


async def tour(page: Any, url: str, request_id: str, lang: str) -> None:
    """Every page behind the sign-in, in `lang`, chosen on the switch of the overview and remembered."""
    await page.goto(f"{url}/")
    await choose(page, lang)
    await page.goto(f"{url}/")  # remembered: no ?lang= in this address or any below
    await visit(page, "", "overview", lang)
    assert await page.locator("svg[role=img]").count() == 2
    await visit(page, f"{url}/cases?review=true", "cases", lang)
    await visit(page, f"{url}/cases/{request_id}", "case", lang)
    assert request_id in await page.locator("main h1").inner_text()
    await visit(page, f"{url}/intake", "intake", lang)
    await page.fill("#req-email", f"nobody-{uuid.uuid4().hex[:8]}@office-test.example")
    await page.click("form[action='/intake/request'] button[type=submit]")
    assert await page.locator("[role=alert]").inner_text() == {
        "sv": "Ingen registrerad person har den adressen. Be personen skriva från adressen hen registrerade "
              "sig med.",
        "en": "No registered person has that address. Ask them to write from the address they registered "
              "with."}[lang]
    await visit(page, "", "intake-refused", lang)  # the form's answer, as a page of its own
    await visit(page, f"{url}/systems", "systems", lang)
    await visit(page, f"{url}/systems?system=accounts", "systems-accounts", lang)

    async def listed() -> bool:
        await page.goto(f"{url}/dead-letters")
        return await page.locator("td", has_text="both-languages").count() > 0

    await wait_until(listed, timeout=60, what="the dead letter on /dead-letters")
    await visit(page, "", "dead-letters", lang)
    await visit(page, f"{url}/audit", "audit", lang)
    await page.click("form[action='/audit/verify'] button")
    assert await page.locator("[role=status]").inner_text() == {
        "sv": "Alla kedjor kontrollerade nu.", "en": "Every chain verified now."}[lang]
    await visit(page, "", "audit-verified", lang)
    await visit(page, f"{url}/cases/not-a-case", "error", lang)


async def test_every_page_in_swedish_and_english_on_a_phone_and_a_desktop(stack: Stack, office: dict[str, ServiceProcess], operator_page: Any) -> None:
    from tests.helpers import publish_raw

    page = operator_page
    url = office["office"].url
    request_id = await objection_in_review(stack, office)
    await publish_raw(stack.endpoints.kafka_bootstrap, USER_REGISTERED, b"both-languages", b"not json")
    # Signed out: the sign-in page, first in the browser's Swedish, then as the switch chooses.
    for viewport in (PHONE, DESKTOP):
        await page.set_viewport_size(viewport)
        for lang in ("sv", "en"):
            await page.goto(f"{url}/sign-in")
            if viewport is PHONE and lang == "sv":
                assert await page.get_attribute("html", "lang") == "sv"  # Accept-Language: sv-SE
            await choose(page, lang)
            await visit(page, "", "sign-in", lang)
    await signed_in_once(page, url)
    for viewport in (PHONE, DESKTOP):
        await page.set_viewport_size(viewport)
        for lang in ("sv", "en"):
            await tour(page, url, request_id, lang)


async def test_an_operator_switches_to_swedish_on_a_case_and_goes_on_with_it(stack: Stack, office: dict[str, ServiceProcess], operator_page: Any) -> None:
    page = operator_page
    await page.set_viewport_size(DESKTOP)
    request_id = await objection_in_review(stack, office)
    url = office["office"].url
    await signed_in_once(page, url)
    await choose(page, "en")
    await page.goto(f"{url}/cases?review=true&right=objection")
    await page.click(f"a[href='/cases/{request_id}']")
    assert await page.locator("main h1").inner_text() == f"Case {request_id}"
    await page.click(".langs a[hreflang=sv]")
    # The same case, now in Swedish.
    assert page.url == f"{url}/cases/{request_id}?lang=sv"
    assert await page.get_attribute("html", "lang") == "sv"
    assert await page.locator("main h1").inner_text() == f"Ärende {request_id}"
    assert await page.locator("#ground option[value=legitimate_grounds]").inner_text() == \
        "Tvingande berättigade skäl för behandlingen väger tyngre än invändningen (GDPR art. 21.1)"
    await check(page, "case-switched")
    # The operator goes on in Swedish: finds the case again by its id and extends its deadline.
    await page.click("nav.menu a[href='/cases']")
    await page.fill("#q", request_id)
    await page.click("form[role=search] button[type=submit]")
    assert await page.get_attribute("html", "lang") == "sv"
    assert await page.locator(f"a[href='/cases/{request_id}']").count() == 1
    assert "invändning mot behandling" in await page.locator("tbody tr").first.inner_text()
    await check(page, "cases-switched")
    await page.click(f"a[href='/cases/{request_id}']")
    await page.check("input[name=months][value='1']")
    await page.fill("#extend-reason", "Utredningen kräver svar från två system.")
    await page.click("form[action$='/extend'] button")
    assert await page.locator("[role=status]").inner_text() == "Svarstiden förlängd; personen får veta varför."
    await wait_case(office, request_id, "the case extended from the Swedish page", extended=True)
    row = page.locator("tr", has_text="Operatören förlängde svarstiden")
    assert "anna" in await row.inner_text()
    # And back: the language stays what the operator chose last.
    await page.click(".langs a[hreflang=en]")
    await page.goto(f"{url}/cases/{request_id}")
    assert await page.locator("main h1").inner_text() == f"Case {request_id}"
