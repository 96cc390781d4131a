"""The erasure hold through the whole system (real Kafka, PostgreSQL, SMTP sink; consent, dsar and
notifier as processes): from the verification of an erasure case on, the subject gets only that case's
emails, while downstream systems are still answering; a rejected or cancelled case ends the hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from schemas.events import DsarStatus, ErasureRequested
from schemas.topics import DSAR_STATUS, ERASURE_REQUESTED, MERGER_NOTICE
from tests.helpers import ServiceProcess, get_json, publish, wait_until
from tests.notifier.test_notifier_e2e import consumed, merger, register

pytestmark = pytest.mark.stack


def mail_to(stack: Any, address: str) -> list[Path]:
    return sorted(Path(stack.endpoints.mail_dir).glob(f"*{address}.eml"))


async def status(bootstrap: str, subject: str, request_id: uuid.UUID, value: str, **extra: Any) -> str:
    return await publish(bootstrap, DSAR_STATUS, DsarStatus(
        request_id=request_id, right="erasure", status=value, due_at=datetime.now(UTC) + timedelta(days=30),
        extended=False, **extra), subject=subject)


async def test_a_subject_whose_erasure_waits_for_a_slow_system_gets_no_notice(stack: Stack, system: dict[str, ServiceProcess], db: asyncpg.Connection) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    tag = uuid.uuid4().hex[:8]
    domain = f"hold-{tag}.example"
    erasing, bystander, released = (f"hold-{tag}-{name}" for name in ("erasing", "bystander", "released"))
    await register(bootstrap, db, [erasing, bystander, released], domain)

    # A verified erasure: dsar sends its commands; no downstream system answers (they are slow), so the
    # case waits in awaiting_systems while the notice goes out.
    request_id = uuid.uuid4()
    await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=request_id, ground="consent_withdrawn", identity_verified=True, requested_via="web_form"),
        subject=erasing)

    async def held(subject: str) -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM erasure_holds WHERE subject = $1", subject))

    await wait_until(lambda: held(erasing), timeout=90, what="the notifier to learn of the verified erasure")
    # Another subject's erasure case is verified, then cancelled: their hold ends.
    other_case = uuid.uuid4()
    await status(bootstrap, released, other_case, "in_progress")
    await wait_until(lambda: held(released), timeout=60, what="the second hold")
    await consumed(db, await status(bootstrap, released, other_case, "cancelled"))
    assert not await held(released)

    transaction_id = f"hold-{tag}"
    await publish(bootstrap, MERGER_NOTICE, merger(transaction_id), subject=None, key=transaction_id)
    job = f"{MERGER_NOTICE}:{transaction_id}"

    async def decided() -> dict[str, tuple[str, str | None]] | None:
        rows = await db.fetch("SELECT subject, status, last_error FROM emails WHERE origin = $1 "
                              "AND subject = ANY($2::text[])", job, [erasing, bystander, released])
        found = {r["subject"]: (r["status"], r["last_error"]) for r in rows}
        done = len(found) == 3 and all(s in ("sent", "suppressed", "failed") for s, _ in found.values())
        return found if done else None

    outcome = await wait_until(decided, timeout=180, what="the merger notice decided for the three subjects")
    assert outcome[erasing] == ("suppressed", "erasure_pending"), outcome
    assert outcome[bystander][0] == "sent" and outcome[released][0] == "sent", outcome
    case = await get_case_status(system["dsar"].url, request_id)
    assert case == "awaiting_systems", "the case was still waiting for systems when the notice went out"

    # What the erasing subject did get is about their own case only.
    own = await db.fetch("SELECT template, status, last_error FROM emails WHERE subject = $1 AND origin <> $2",
                         erasing, job)
    assert all(r["last_error"] != "erasure_pending" for r in own), own
    sent_own = [r for r in own if r["status"] == "sent"]
    assert len(mail_to(stack, f"{erasing}@{domain}")) == len(sent_own)
    assert len(mail_to(stack, f"{bystander}@{domain}")) == 1


async def get_case_status(dsar_url: str, request_id: uuid.UUID) -> str:
    status_code, body = await get_json(f"{dsar_url}/v1/requests/{request_id}")
    assert status_code == 200, body
    return str(body["status"])
