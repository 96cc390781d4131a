"""One downstream system cannot answer for another (the command id is the capability).

Through the real stack: `partners` sees the request id in its own erase command and forges `accounts'`
answer, first with the id the request id alone would give, then with accounts' real id under its own
name. Neither settles anything: the case stays open until accounts itself answers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from schemas.events import ErasureRequested, UserRegistered
from schemas.topics import ERASURE_REQUESTED, EXTERNAL_SYSTEMS, USER_REGISTERED
from services.dsar import cases
from tests.helpers import (
    CommandPlayer,
    ServiceProcess,
    downstream_answer,
    get_json,
    playing,
    publish,
    subject_id,
    wait_until,
)

pytestmark = pytest.mark.stack

#: Played by the test and not answered until it says so.
HELD = ("accounts", "support")


class Systems(CommandPlayer):
    """Every external system; those in HELD keep their commands until `answer` is called."""

    def __init__(self, bootstrap: str):
        super().__init__(bootstrap, EXTERNAL_SYSTEMS, from_now=True)
        self.commands: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    async def on_command(self, subject: str, command: dict[str, Any]) -> None:
        self.commands.setdefault(command["system"], []).append((subject, command))
        if command["system"] not in HELD:
            await self.answer(subject, downstream_answer(subject, command))

    def received(self, system: str, subject: str, action: str) -> dict[str, Any] | None:
        return next((d for s, d in self.commands.get(system, []) if s == subject and d["action"] == action), None)


@pytest.fixture
async def systems(stack: Stack) -> AsyncIterator[Systems]:
    async with playing(Systems(stack.endpoints.kafka_bootstrap)) as played:
        yield played


async def test_a_forged_ack_leaves_the_case_open(stack: Stack, system: dict[str, ServiceProcess], systems: Systems) -> None:
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    subject = subject_id("forged")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.org", country="SE"),
                  subject=subject)
    request_id = uuid.uuid4()
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=request_id, ground="consent_withdrawn", identity_verified=True, requested_via="web_form"),
        subject=subject)

    async def commands_out() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        found = (systems.received("partners", subject, "erase"), systems.received("accounts", subject, "erase"),
                 systems.received("support", subject, "erase"))
        return found if all(found) else None  # type: ignore[return-value]

    partners, accounts, support = await wait_until(commands_out, timeout=90, what="the erase commands")
    assert partners["request_id"] == str(request_id), "partners sees the request id"

    # What partners can compute from what it sees: the id derived from the request id alone.
    guessed = uuid.uuid5(cases.COMMAND_NAMESPACE, f"{request_id}:accounts:erase:-:1")
    await systems.answer(subject, {"command_id": str(guessed), "system": "accounts", "status": "done"})
    # Accounts' real id (leaked, say) answered under another system's name: recorded, ignored.
    await systems.answer(subject, {"command_id": accounts["command_id"], "system": "partners", "status": "done"})
    # Then support answers for real, after the forgeries on the subject's partition: once it is settled,
    # dsar has read the forgeries too.
    await systems.answer(subject, downstream_answer(subject, support))

    async def settled(command_id: str) -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT acked_at IS NOT NULL FROM dsar.commands WHERE command_id = $1",
                                            uuid.UUID(command_id)))
        finally:
            await conn.close()

    await wait_until(lambda: settled(support["command_id"]), timeout=60, what="support's answer to be recorded")

    async def others_settled() -> bool:  # every command but accounts' erase is answered (services included)
        conn = await asyncpg.connect(dsn)
        try:
            open_ = await conn.fetch("SELECT system, action FROM dsar.commands WHERE request_id = $1 "
                                     "AND acked_at IS NULL", request_id)
            return {(r["system"], r["action"]) for r in open_} <= {("accounts", "erase")}
        finally:
            await conn.close()

    await wait_until(others_settled, timeout=60, what="every other system's answer")
    assert not await settled(accounts["command_id"]), "accounts' command is not settled by a forgery"
    status, body = await get_json(f"{system['dsar'].url}/v1/requests/{request_id}")
    assert status == 200 and body["status"] == "awaiting_systems", body
    conn = await asyncpg.connect(dsn)
    try:
        keys = await conn.fetchval("SELECT count(*) FROM dsar.subject_keys WHERE subject = $1", subject)
        ignored = await conn.fetch("SELECT detail FROM dsar.audit_log WHERE action = 'command_ack_ignored' "
                                   "AND ref = $1", accounts["command_id"])
    finally:
        await conn.close()
    assert keys == 1, "the subject's key is not shredded while accounts still holds the data"
    assert ignored, "the answer under another system's name is recorded"

    # Accounts' own answer completes the case.
    await systems.answer(subject, downstream_answer(subject, accounts))

    async def completed() -> bool:
        status, body = await get_json(f"{system['dsar'].url}/v1/requests/{request_id}")
        return status == 200 and body["status"] == "completed"

    await wait_until(completed, timeout=90, interval=0.5, what="the erasure to complete on accounts' answer")
