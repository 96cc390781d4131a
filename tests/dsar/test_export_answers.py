"""Export answers in parts that cannot be used go to an operator with the reason, never wait silently.

The dsar service as a real process; a responder plays every other system. `accounts` answers its first
export in parts that cannot be used (one part altered: a digest mismatch; or one part never sent, until
past `respond_by`); the case goes to manual review naming the reason; approving asks again with a new
command, whose parts (out of order, repeated) complete the package.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.stack import Stack
from privacy_runtime import export_chunks
from schemas.envelope import new_event
from schemas.events import DsarRequested, PrivacyAck
from schemas.topics import ALL_SYSTEMS, DSAR_REQUESTED, PRIVACY_ACKS, command_topic
from tests.helpers import (
    TEST_ADMIN_TOKEN,
    ServiceProcess,
    commit_group_offsets,
    downstream_answer,
    event_of,
    get_json,
    publish,
    stop_player,
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


class Responder:
    def __init__(self, bootstrap: str, group: str):
        self._consumer = AIOKafkaConsumer(*(command_topic(s) for s in PLAYED), bootstrap_servers=bootstrap,
                                          group_id=group, auto_offset_reset="earliest")
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._task: asyncio.Task[None] | None = None
        self.first_command: dict[str, str] = {}

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await stop_player(self._task, self._consumer, self._producer)

    async def _send(self, subject: str, ack: dict[str, Any]) -> None:
        event = new_event(PRIVACY_ACKS, PrivacyAck.model_validate(ack), subject=subject, source="urn:test:parts")
        await self._producer.send_and_wait(PRIVACY_ACKS, key=subject.encode(), value=event.model_dump_json().encode())

    async def _run(self) -> None:
        async for message in self._consumer:
            event = event_of(message)
            if event is None or "subject" not in event:
                continue
            subject, command = event["subject"], event["data"]
            if command["system"] != "accounts" or command["action"] != "export" or subject not in FIRST_ANSWER:
                await self._send(subject, downstream_answer(subject, command))
                continue
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
                await self._send(subject, {"command_id": command["command_id"], "system": "accounts",
                                           "status": "done", "part": part.part, "parts": part.parts,
                                           "export_chunk": part.chunk, "export_sha256": part.sha256})


@pytest.fixture(scope="module")
async def dsar(stack: Stack) -> AsyncIterator[ServiceProcess]:
    bootstrap = stack.endpoints.kafka_bootstrap
    group = f"parts-responder-{uuid.uuid4().hex[:8]}"
    await commit_group_offsets(bootstrap, group, [command_topic(s) for s in PLAYED], to_end=True)
    responder = Responder(bootstrap, group)
    await responder.start()
    service = ServiceProcess("dsar", stack.env(), {
        "COMMAND_RESPOND_WITHIN_SECONDS": "20", "TIMER_INTERVAL_SECONDS": "0.5"}).start()
    try:
        await service.wait_ready(timeout=90)
        yield service
    finally:
        service.stop()
        await responder.stop()


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
