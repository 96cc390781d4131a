"""The hostile corpus against every form of the privacy center, signed in: oversized, wrong types and
encodings, script in every field. Each answer is a 4xx (or, for free text that is valid, accepted),
never a 5xx; what was sent comes back escaped; the service is still up afterwards."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from devstack.stack import Stack
from tests.helpers import wait_until
from tests.privacy_center.support import register, sign_in
from tests.reliability.hostile import SCRIPT, form_cases

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

pytestmark = [pytest.mark.stack, pytest.mark.browser]

FORMS: dict[str, list[str]] = {
    "/": ["email"],
    "/me/consents": ["submission", "marketing_email", "analytics", "bookkeeping"],
    "/me/requests": ["submission", "right", "format", "ground", "circumstance", "processing", "name", "email",
                     "company", "phone", "country", "explanation"],
    "/verify/{rid}": ["code"],
    "/s/{token}": ["x"],
}


async def test_hostile_forms(stack: Stack, center_system: CenterSystem, desktop_page: Any) -> None:
    center = center_system.center.url
    _, address = await register(stack, center_system.consent.url, locale="sv", prefix="pc-hostile")
    await sign_in(desktop_page, stack, center, address)
    cookies = {c["name"]: c["value"] for c in await desktop_page.context.cookies()}
    seen: list[tuple[str, str, int]] = []
    async with httpx.AsyncClient(base_url=center, cookies=cookies, timeout=30) as client:
        me = await client.get("/me")
        assert me.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', me.text)
        assert token
        csrf = token.group(1)
        for path, fields in FORMS.items():
            target = path.format(rid=uuid.uuid4(), token="A" * 43)
            for case in form_cases(fields):
                body = case.body.replace(b"{csrf}", csrf.encode())
                headers = {"Content-Type": case.content_type} if case.content_type else {}
                answer = await client.post(target, content=body, headers=headers)
                seen.append((target, case.name, answer.status_code))
                assert answer.status_code < 500, (target, case.name, answer.text[:300])
                assert "<script>alert(1)" not in answer.text and "onerror=alert" not in answer.text.replace(
                    "onerror=alert(1)&gt;", ""), (target, case.name)
                if case.name in ("oversized",):
                    assert answer.status_code == 413, (target, case.name)
                elif case.name.startswith("no csrf"):
                    assert answer.status_code == 403, (target, case.name)
                elif case.name in ("json body", "multipart"):
                    assert answer.status_code == 415, (target, case.name)
                elif case.name in ("not utf-8", "control characters", "too many fields"):
                    assert answer.status_code == 400, (target, case.name)
                elif case.name == "script in every field" and path == "/me/requests":
                    # The right is not one of the six: refused, and the page says why in words.
                    assert answer.status_code == 400, (target, case.name)
                else:
                    assert 300 <= answer.status_code < 500, (target, case.name, answer.status_code)
        # Script as free text in a valid request is data: accepted, and shown escaped on the page.
        fix = {"csrf_token": csrf, "submission": str(uuid.uuid4()), "right": "rectification", "name": SCRIPT,
               "explanation": SCRIPT}
        accepted = await client.post("/me/requests", data=fix)
        assert accepted.status_code == 303

        async def shown() -> str:
            page = await client.get("/me")
            return page.text if "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text else ""

        listed = await wait_until(shown, timeout=60, what="the request and what was written, escaped, on /me")
        assert "<script>alert(1)" not in listed and "<img src=x" not in listed
        for path in ("/me", "/done", f"/s/{'A' * 5000}", "/verify/not-a-uuid", "/manage/forged.token.here",
                     "/s/%00", "/nowhere", "/me?lang=<script>"):
            page = await client.get(path)
            assert page.status_code < 500, path
            assert "<script>alert(1)" not in page.text, path
    assert (await client_ready(center)), "the privacy center is still up"
    assert len(seen) == sum(len(form_cases(f)) for f in FORMS.values())


async def client_ready(center: str) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{center}/readyz")).status_code == 200
