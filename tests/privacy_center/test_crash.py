"""The privacy center SIGKILLed right after a person submitted a request: the request was committed
with its event in the outbox, so when the center comes back it is published, exactly once, even
though the person also submitted the same form twice."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from schemas.topics import ERASURE_REQUESTED
from tests.helpers import event_of, get_json, read_topic, wait_until
from tests.privacy_center.support import register, sign_in

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.faults]


async def test_a_request_submitted_just_before_a_crash_is_published_once(
        stack: Stack, center_system: CenterSystem, desktop_page: Any) -> None:
    env = stack.env()
    subject, address = await register(stack, center_system.consent.url, locale="sv", prefix="pc-crash")
    await sign_in(desktop_page, stack, center_system.center.url, address)
    cookies = {c["name"]: c["value"] for c in await desktop_page.context.cookies()}
    # Now a center whose relay holds events in the outbox: the crash comes before anything left. The
    # session goes on (it is kept in the database).
    center_system.center.stop()
    held = center_system.center_process(env, OUTBOX_RELAY="false").start()
    await held.wait_ready(timeout=90)
    center = held.url
    submission = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=center, cookies=cookies) as client:
        me = await client.get("/me")
        token = re.search(r'name="csrf_token" value="([^"]+)"', me.text)
        assert token
        form = {"csrf_token": token.group(1), "submission": submission, "right": "erasure",
                "ground": "consent_withdrawn"}
        for _ in range(2):  # a double click: the same form twice
            answer = await client.post("/me/requests", data=form)
            assert answer.status_code == 303 and answer.headers["location"] == "/done"
    held.kill()

    dsn = stack.endpoints.database_url
    conn = await asyncpg.connect(dsn)
    try:
        waiting = await conn.fetchval("SELECT count(*) FROM privacy_center.outbox WHERE topic = $1", ERASURE_REQUESTED)
    finally:
        await conn.close()
    assert waiting >= 1, "the request waits in the outbox, committed with the submission"

    def ours(message: Any) -> bool:
        event = event_of(message)
        return event is not None and event.get("subject") == subject

    assert not [m for m in await read_topic(stack.endpoints.kafka_bootstrap, ERASURE_REQUESTED) if ours(m)]

    back = center_system.center_process(env).start()
    center_system.center = back
    await back.wait_ready(timeout=90)

    async def drained() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM privacy_center.outbox") == 0
        finally:
            await conn.close()

    await wait_until(drained, timeout=60, what="the restarted center to publish its outbox")
    published = [m for m in await read_topic(stack.endpoints.kafka_bootstrap, ERASURE_REQUESTED) if ours(m)]
    assert len(published) == 1, f"published {len(published)} times"
    request_id = event_of(published[0])["data"]["request_id"]  # type: ignore[index]

    async def opened() -> bool:
        status, body = await get_json(f"{center_system.dsar.url}/v1/requests/{request_id}")
        return status == 200 and body["right"] == "erasure"

    await wait_until(opened, timeout=60, what="the dsar service to open the erasure case")
