"""The privacy center end to end, in a real headless Chromium against the real services, broker,
database and SMTP sink: what a person does, and what reaches the systems."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.topics import CONSENT_CHANGED, DSAR_REQUESTED, command_topic
from tests.browser_kit import assert_accessible, screenshot
from tests.helpers import event_of, get_json, wait_for_messages, wait_until
from tests.privacy_center.support import mails_to, register, sign_in_links

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def _data(message: Any) -> dict[str, Any]:
    event = event_of(message)
    return dict(event["data"]) if event else {}


def _subject_is(subject: str) -> Any:
    return lambda m: (event_of(m) or {}).get("subject") == subject


async def test_a_swedish_person_signs_in_switches_marketing_and_asks_for_a_csv_copy(
        stack, center_system, desktop_page) -> None:  # type: ignore[no-untyped-def]
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
