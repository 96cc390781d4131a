"""Helpers of the privacy center's end-to-end tests: people registered, their emails, their links."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from devstack.smtp_sink import read_messages
from schemas.events import ConsentGrant, UserRegistered
from schemas.topics import USER_REGISTERED
from tests.helpers import get_json, publish, subject_id, wait_until

LINK = re.compile(r"https?://[^\s<>\"]+/s/[A-Za-z0-9_-]{20,128}(?:\?lang=[a-z]{2})?")


async def register(stack: Any, consent_url: str, *, locale: str, prefix: str, country: str = "SE",
                   marketing: bool = True) -> tuple[str, str]:
    """A registered person (subject, address), known to consent and the notifier's directory."""
    subject = subject_id(prefix)
    address = f"{subject}@example.org"
    await publish(stack.endpoints.kafka_bootstrap, USER_REGISTERED, UserRegistered(
        email=address, name="Test Person", country=country, locale=locale,  # type: ignore[arg-type]
        consents=[ConsentGrant(purpose="marketing_email", granted=marketing)]), subject=subject)  # type: ignore[arg-type]

    async def known() -> bool:
        status, _ = await get_json(f"{consent_url}/v1/subjects/{subject}/consents")
        conn = await asyncpg.connect(stack.endpoints.database_url)
        try:
            listed = await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE subject = $1", subject)
        finally:
            await conn.close()
        return status == 200 and listed == 1

    await wait_until(known, timeout=60, what=f"{subject} registered in consent and the notifier")
    return subject, address


def mails_to(stack: Any, address: str) -> list[Any]:
    return [m for m in read_messages(stack.endpoints.mail_dir, containing=address)
            if address in str(m.get("To", ""))]


def body_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def sign_in_links(stack: Any, address: str, count: int = 1) -> list[str]:
    """The sign-in links emailed to `address`, oldest first, once there are at least `count`."""

    async def links() -> list[str]:
        found = [m.group(0) for mail in mails_to(stack, address) for m in [LINK.search(body_of(mail))] if m]
        return found if len(found) >= count else []

    return await wait_until(links, timeout=60, what=f"{count} sign-in email(s) to {address}")


async def sign_in(page: Any, stack: Any, center: str, address: str) -> str:
    """Ask for a link on the start page, open it from the email and press the button; the link used."""
    before = len(mails_to(stack, address))
    await page.goto(f"{center}/")
    await page.fill("#email", address)
    await page.click("form[action='/'] button[type=submit]")
    await page.wait_for_url(f"{center}/sent")
    link = (await sign_in_links(stack, address, count=before + 1))[-1]
    await page.goto(link)
    await page.click("main form button[type=submit]")
    await page.wait_for_url(f"{center}/me")
    return link


async def code_for(stack: Any, address: str, count: int = 1) -> str:
    """The newest verification code emailed to `address`, once `count` code emails arrived."""

    async def codes() -> list[str]:
        found = [m.group(1) for mail in mails_to(stack, address)
                 for m in [re.search(r"(?:code|verifieringskod): (\d{6})", body_of(mail))] if m]
        return found if len(found) >= count else []

    return (await wait_until(codes, timeout=60, what=f"a verification code email to {address}"))[-1]
