"""Export answers in parts that cannot be used go to an operator with the reason, never wait silently.

The dsar service as a real process; a responder plays every other system. `accounts` answers its first
export in parts that cannot be used (one part altered: a digest mismatch; or one part never sent, until
past `respond_by`); the case goes to manual review naming the reason; approving asks again with a new
command, whose parts (out of order, repeated) complete the package.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from privacy_runtime import export_chunks
from schemas.events import DsarRequested
from schemas.topics import ALL_SYSTEMS, DSAR_REQUESTED
from tests.helpers import (
    TEST_ADMIN_TOKEN,
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

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
PLAYED = tuple(s for s in ALL_SYSTEMS if s != "dsar")
#: What the first export answer of `accounts` does, per subject: "corrupt" or "half".
FIRST_ANSWER: dict[str, str] = {}


def _accounts_export(subject: str) -> dict[str, Any]:
    return {"system": "accounts", "records": [{"subject": subject, "login": n, "note": "inloggning åäö"}
                                              for n in range(300)]}


class Responder(CommandPlayer):
    source = "urn:test:parts"

    def __init__(self, bootstrap: str):
        super().__init__(bootstrap, PLAYED, from_now=True)
        self.first_command: dict[str, str] = {}

    async def on_command(self, subject: str, command: dict[str, Any]) -> None:
        if command["system"] != "accounts" or command["action"] != "export" or subject not in FIRST_ANSWER:
            await self.answer(subject, downstream_answer(subject, command))
            return
        parts = export_chunks.split(export_chunks.export_text(_accounts_export(subject)), 2000)
        # The first export command of the subject (and its re-sends) is answered badly, a later one well.
        if self.first_command.setdefault(subject, command["command_id"]) == command["command_id"]:
            if FIRST_ANSWER[subject] == "corrupt":
                bad = parts[1]
                parts[1] = export_chunks.Part(bad.part, bad.parts, bad.chunk.replace("login", "logon", 1),
                                              bad.sha256)
            else:  # "half": the last part never comes
                parts = parts[:-1]
        else:
            parts = parts + parts[:2]
            random.Random(3).shuffle(parts)
        for part in parts:
            await self.answer(subject, {"command_id": command["command_id"], "system": "accounts",
                                        "status": "done", "part": part.part, "parts": part.parts,
                                        "export_chunk": part.chunk, "export_sha256": part.sha256})


@pytest.fixture(scope="module")
async def dsar(stack: Stack) -> AsyncIterator[ServiceProcess]:
    async with playing(Responder(stack.endpoints.kafka_bootstrap)), ServiceProcess("dsar", stack.env(), {
        "COMMAND_RESPOND_WITHIN_SECONDS": "20", "TIMER_INTERVAL_SECONDS": "0.5"}).running(timeout=90) as service:
        yield service


async def _case(dsar: ServiceProcess, request_id: uuid.UUID) -> dict[str, Any]:
    status, body = await get_json(f"{dsar.url}/v1/admin/requests/{request_id}", headers=ADMIN)
    assert status == 200, body
    return dict(body)


async def _ask(stack: Stack, subject: str) -> uuid.UUID:
    request_id = uuid.uuid4()
    await publish(stack.endpoints.kafka_bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=request_id, right="access", identity_verified=True, requested_via="web_form"), subject=subject)
    return request_id


async def _in_review(dsar: ServiceProcess, request_id: uuid.UUID) -> str | None:
    status, body = await get_json(f"{dsar.url}/v1/admin/requests/{request_id}", headers=ADMIN)
    return body.get("review_reason") if status == 200 and body.get("manual_review") else None


async def test_a_corrupted_part_sends_the_case_to_review_and_approve_asks_again(stack: Stack, dsar: ServiceProcess) -> None:
    subject = subject_id("corrupt")
    FIRST_ANSWER[subject] = "corrupt"
    request_id = await _ask(stack, subject)
    reason = await wait_until(lambda: _in_review(dsar, request_id), timeout=60, what="the case to go to review")
    assert "accounts" in reason and "digest mismatch" in reason, reason
    case = await _case(dsar, request_id)
    assert case["status"] == "in_progress"
    async with httpx.AsyncClient(timeout=30) as client:
        approved = await client.post(f"{dsar.url}/v1/admin/requests/{request_id}/approve", headers=ADMIN)
    assert approved.status_code == 200, approved.text

    async def completed() -> bool:
        return (await _case(dsar, request_id))["status"] == "completed"

    await wait_until(completed, timeout=60, what="the case to complete on the second answer")
    steps = [s for s in (await _case(dsar, request_id))["steps"] if s["system"] == "accounts"]
    assert [s["outcome"] for s in steps] == ["done"] and steps[0]["attempt"] == 2


async def test_parts_still_missing_at_respond_by_send_the_case_to_review(stack: Stack, dsar: ServiceProcess) -> None:
    subject = subject_id("half")
    FIRST_ANSWER[subject] = "half"
    request_id = await _ask(stack, subject)
    reason = await wait_until(lambda: _in_review(dsar, request_id), timeout=90, what="the case to go to review")
    assert "accounts" in reason and "parts of the export arrived by respond_by" in reason, reason
