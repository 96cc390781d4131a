"""What a person wrote in the privacy center (an objection's reasons, here) is readable until their
erasure completes and never after: the person's page forgets it as soon as dsar lists the completed
erasure, and the privacy center's check deletes it and shreds its key of the person without anyone
opening a page. Real services, broker, database and downstream systems."""

from __future__ import annotations

import base64
import re
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from privacy_runtime.crypto import KeyRing
from privacy_runtime.tokens import MANAGE, TokenSigner
from services.privacy_center.domain import request_id_for
from tests.helpers import TEST_MASTER_KEY, ExternalSystems, ServiceProcess, get_json, wait_until
from tests.privacy_center.conftest import center_env
from tests.privacy_center.support import register

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

pytestmark = [pytest.mark.stack]

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _signed_in(center: str, subject: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=center, timeout=30)
    token = TokenSigner(base64.b64decode(TEST_MASTER_KEY), MANAGE).sign({"s": subject})
    assert (await client.get(f"/manage/{token}")).status_code == 303
    return client


async def _submit(client: httpx.AsyncClient, **fields: str) -> str:
    """Post one right's form from /me; the request id it makes."""
    me = await client.get("/me")
    token = CSRF.search(me.text)
    assert me.status_code == 200 and token
    submission = str(uuid.uuid4())
    answer = await client.post("/me/requests", data={"csrf_token": token.group(1), "submission": submission,
                                                     **fields})
    assert answer.status_code == 303 and answer.headers["location"] == "/done", answer.text[:300]
    return request_id_for(uuid.UUID(submission))


async def _open_note(dsn: str, subject: str, request_id: str) -> tuple[bytes | None, str | None, bool]:
    """The stored note, what a fresh key ring (no cached key) opens of it, and whether the subject has
    a tombstone here."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "privacy_center"})
    try:
        sealed = await conn.fetchval("SELECT note_sealed FROM submissions WHERE subject = $1 AND request_id = $2",
                                     subject, uuid.UUID(request_id))
        ring = KeyRing(base64.b64decode(TEST_MASTER_KEY))
        await ring.load_lookup_key(conn)
        return sealed, await ring.decrypt(conn, subject, f"note:{request_id}", sealed), \
            await ring.is_erased(conn, subject)
    finally:
        await conn.close()


async def _opened_with(dsn: str, subject: str, request_id: str, sealed: bytes) -> str | None:
    """What a fresh key ring opens of a copy of the note (as a backup would still hold it)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "privacy_center"})
    try:
        ring = KeyRing(base64.b64decode(TEST_MASTER_KEY))
        await ring.load_lookup_key(conn)
        return await ring.decrypt(conn, subject, f"note:{request_id}", sealed)
    finally:
        await conn.close()


async def _held(dsn: str, subject: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {table: int(await conn.fetchval(f"SELECT count(*) FROM privacy_center.{table} WHERE subject = $1",
                                               subject))
                for table in ("submissions", "sessions", "subject_keys")}
    finally:
        await conn.close()


async def _write_note_then_erase(stack: Any, center_system: Any, center: str, prefix: str
                                 ) -> tuple[str, httpx.AsyncClient, str, bytes, str]:
    """A person objects with their reasons, sees them on their page, then asks for erasure and it
    completes. Returns the subject, their signed-in client, the objection's id, the sealed note as it
    was stored, and the reasons."""
    dsn = stack.endpoints.database_url
    subject, _ = await register(stack, center_system.consent.url, locale="en", prefix=prefix)
    client = await _signed_in(center, subject)
    reasons = f"I never agreed to this, my neighbour {uuid.uuid4().hex[:8]} signed me up"
    objection = await _submit(client, right="objection", processing="marketing", explanation=reasons)

    async def shown() -> bool:
        return reasons in (await client.get("/me")).text  # once dsar lists the objection

    await wait_until(shown, timeout=90, what="the reasons on the person's page")
    sealed, opened, erased = await _open_note(dsn, subject, objection)
    assert sealed is not None and reasons.encode() not in sealed, "stored sealed"
    assert opened == reasons and not erased, "readable before the erasure"

    erasure = await _submit(client, right="erasure", ground="consent_withdrawn")

    async def completed() -> bool:
        status, body = await get_json(f"{center_system.dsar.url}/v1/requests/{erasure}")
        return status == 200 and body["status"] == "completed"

    await wait_until(completed, timeout=120, interval=0.5, what="the erasure to complete")
    return subject, client, objection, sealed, reasons


async def test_the_persons_page_forgets_a_note_once_their_erasure_completed(
        stack: Stack, center_system: CenterSystem, systems: ExternalSystems) -> None:
    # The module's center checks for erasures only at start and then hourly (conftest): what happens
    # here is the page's own doing.
    dsn = stack.endpoints.database_url
    subject, client, objection, sealed, reasons = await _write_note_then_erase(
        stack, center_system, center_system.center.url, "pc-note-page")
    me = await client.get("/me")
    await client.aclose()
    assert me.status_code == 200 and reasons not in me.text
    stored, opened, erased = await _open_note(dsn, subject, objection)
    assert stored is None and opened is None and erased
    assert await _opened_with(dsn, subject, objection, sealed) is None, "the key that sealed it is gone"
    assert await _held(dsn, subject) == {"submissions": 0, "sessions": 0, "subject_keys": 0}


async def test_the_check_shreds_an_erased_persons_notes_without_anyone_looking(
        stack: Stack, center_system: CenterSystem, systems: ExternalSystems) -> None:
    dsn = stack.endpoints.database_url
    checking = ServiceProcess("privacy_center", stack.env())
    checking.extra_env = {**center_env(center_system, checking), "ERASURE_CHECK_SECONDS": "1"}
    checking.start()
    try:
        await checking.wait_ready(timeout=90)
        subject, client, objection, sealed, _ = await _write_note_then_erase(
            stack, center_system, checking.url, "pc-note-check")

        async def forgotten() -> bool:
            return await _held(dsn, subject) == {"submissions": 0, "sessions": 0, "subject_keys": 0}

        await wait_until(forgotten, timeout=60, what="the privacy center to forget the erased person")
        assert await _opened_with(dsn, subject, objection, sealed) is None, "a copy of the note opens no more"
        _, _, erased = await _open_note(dsn, subject, objection)
        assert erased, "a tombstone: no key is made for them again"
        me = await client.get("/me")
        await client.aclose()
        assert me.status_code == 401, "their session ended with the rest"
    finally:
        checking.stop()
