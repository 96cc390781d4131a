"""Every page of the privacy center in both languages on a 360 px phone and a 1280 px desktop: a
screenshot of each under var/screenshots/ (`make screenshots`) and 0 axe-core violations; no script, no inline style."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from devstack.stack import Stack
from privacy_runtime import vocabulary
from privacy_runtime.datamap import load_data_map
from privacy_runtime.settings import DEFAULT_DATA_MAP
from privacy_runtime.summary import SUMMARY_MESSAGES
from schemas.events import DsarDetails, DsarRequested
from schemas.topics import DSAR_REQUESTED
from tests.browser_kit import DESKTOP, PHONE, assert_accessible, assert_no_script, new_page, screenshot
from tests.helpers import publish
from tests.privacy_center.support import code_for, register, sign_in, sign_in_links

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

DATA_MAP = load_data_map(DEFAULT_DATA_MAP)
pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def _shot(page: Any, name: str, lang: str) -> None:
    assert await page.get_attribute("html", "lang") == lang, f"{name} is in {lang}"
    assert_no_script(await page.content())
    await screenshot(page, name, lang)
    await assert_accessible(page)


async def _check_summary(page: Any, lang: str) -> None:
    """/me shows the access report's summary of every system, in the page's language."""
    assert await page.inner_text("#held") == SUMMARY_MESSAGES["summary.title"][lang]
    for entry in DATA_MAP.systems.values():
        section = page.locator(f"section[aria-labelledby='system-{entry.id}']")
        assert await section.locator("h3").inner_text() == vocabulary.word("system", entry.id, lang)
        text = await section.inner_text()
        for attribute in ("retention", "location", "transfer_mechanism"):
            assert vocabulary.localized(entry, attribute, lang) in text, (entry.id, attribute)
        assert SUMMARY_MESSAGES["summary.retention"][lang] in text
        for purpose in entry.purposes:
            assert vocabulary.word("purpose", purpose, lang) in text, (entry.id, purpose)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["360", "1280"])
@pytest.mark.parametrize("lang", ["sv", "en"])
async def test_every_page(stack: Stack, center_system: CenterSystem, browser: Any, viewport: dict[str, int], lang: str) -> None:
    center = center_system.center.url
    subject, address = await register(stack, center_system.consent.url, locale=lang, prefix=f"pc-shot-{lang}")
    page = await new_page(browser, viewport, locale="sv-SE" if lang == "sv" else "en-GB")
    try:
        await page.goto(f"{center}/me")
        await _shot(page, "session-ended", lang)
        await page.goto(f"{center}/")
        await _shot(page, "start", lang)
        await page.fill("#email", "not an address")
        await page.evaluate("document.querySelector('#email').type = 'text'")  # past the browser's own check
        await page.click("form[action='/'] button[type=submit]")
        await _shot(page, "start-invalid", lang)
        link = await sign_in(page, stack, center, address)
        await _shot(page, "me", lang)
        await _check_summary(page, lang)
        await page.check("input[name=marketing_email][value=off]")
        await page.click("form[action='/me/consents'] button[type=submit]")
        await _shot(page, "done-consents", lang)
        await page.goto(f"{center}/me")
        # An objection (an erasure would hold back every later email to the person, the code's too).
        await page.check("#form-objection input[name=processing][value=marketing]")
        await page.click("#form-objection button[type=submit]")
        await _shot(page, "done-request", lang)
        await page.goto(link)
        await _shot(page, "link-used", lang)
        await page.goto(f"{center}/me")
        await page.click("form.signout button[type=submit]")
        await _shot(page, "signed-out", lang)

        # The sign-in landing and the sent page, with a fresh link (its landing page uses nothing up).
        await page.goto(f"{center}/")
        await page.fill("#email", address)
        await page.click("form[action='/'] button[type=submit]")
        await _shot(page, "sent", lang)
        await page.goto((await sign_in_links(stack, address, count=2))[-1])
        await _shot(page, "sign-in", lang)

        # The code page of a request that came by email.
        request_id = uuid.uuid4()
        await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
            request_id=request_id, right="portability", identity_verified=False,  # type: ignore[arg-type]
            requested_via="email", details=DsarDetails(format="csv")), subject=subject)  # type: ignore[arg-type]
        code = await code_for(stack, address)
        await page.goto(f"{center}/verify/{request_id}")
        await _shot(page, "verify", lang)
        await page.fill("#code", "000000" if code != "000000" else "111111")
        await page.click("main form button[type=submit]")
        await _shot(page, "verify-wrong", lang)
        await page.fill("#code", code)
        await page.click("main form button[type=submit]")
        await _shot(page, "verified", lang)
        await page.goto(f"{center}/s/{'x' * 40}")
        await _shot(page, "link-unknown", lang)
    finally:
        await page.context.close()
