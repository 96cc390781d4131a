"""An active user gets a copy of their data: an export too large for one message travels in parts.

Through the real stack (the three services, the local stand-ins for the external systems, Kafka,
PostgreSQL): a subject with 300 consent changes asks for access; the consent service's answer does not
fit one message, so it answers in parts; dsar assembles and verifies them, the case completes, the
package holds the whole consent history, and nothing lands on any dead-letter topic.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.stack import Stack
from privacy_runtime.crypto import KeyRing, open_sealed
from schemas.events import ConsentChanged, DsarRequested, UserRegistered
from schemas.topics import (
    CONSENT_CHANGED,
    DLQ_TOPICS,
    DSAR_REQUESTED,
    PRIVACY_ACKS,
    USER_REGISTERED,
)
from tests.helpers import (
    TEST_MASTER_KEY,
    Outgoing,
    ServiceProcess,
    event_of,
    get_json,
    publish,
    publish_many,
    read_topic,
    subject_id,
    wait_until,
)

pytestmark = pytest.mark.stack

CHANGES = 300


async def _dead_letter_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in DLQ_TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def _package(dsn: str, request_id: uuid.UUID) -> dict[str, Any]:
    """The assembled package, opened as its download would open it."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT token_hash, subject, package_sealed FROM dsar.exports WHERE request_id = $1",
                                  request_id)
        assert row is not None, "a package was assembled"
        await conn.execute('SET search_path = "dsar"')
        keyring = KeyRing(base64.b64decode(TEST_MASTER_KEY))
        await keyring.load_lookup_key(conn)
        key = await keyring.data_key(conn, row["subject"], create=False)
        assert key is not None
        body = open_sealed(key, bytes(row["package_sealed"]), f"export:{row['token_hash']}".encode())
        with zipfile.ZipFile(io.BytesIO(body)) as archive:  # the report, then package.json
            [name] = [n for n in archive.namelist() if n.endswith("/package.json")]
            return dict(json.loads(archive.read(name)))
    finally:
        await conn.close()


@pytest.mark.usefixtures("systems")  # the stand-ins answer every external system's commands
async def test_a_subject_with_300_consent_changes_gets_a_complete_package(
    stack: Stack, system: dict[str, ServiceProcess]
) -> None:
    bootstrap, dsn = stack.endpoints.kafka_bootstrap, stack.endpoints.database_url
    subject = subject_id("active")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.org", name="Aktiv Användare",
                                                             country="SE", locale="sv"), subject=subject)
    start = datetime.now(UTC) - timedelta(hours=2)
    await publish_many(bootstrap, CONSENT_CHANGED, [
        Outgoing(ConsentChanged(purpose="marketing_email", granted=n % 2 == 0, channel="preference_center",
                                policy_version=f"2026-{n:03d}"), subject=subject, time=start + timedelta(seconds=n))
        for n in range(CHANGES)])

    async def recorded() -> bool:
        status, body = await get_json(f"{system['consent'].url}/v1/subjects/{subject}/consents")
        return status == 200 and len(body["history"]) == CHANGES

    await wait_until(recorded, timeout=120, interval=0.5, what=f"the {CHANGES} consent changes to be recorded")
    before = await _dead_letter_offsets(bootstrap)

    request_id = uuid.uuid4()
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(request_id=request_id, right="access",
                                                           identity_verified=True, requested_via="web_form"),
                  subject=subject)

    async def completed() -> str | None:
        status, body = await get_json(f"{system['dsar'].url}/v1/requests/{request_id}")
        return body["status"] if status == 200 and body["status"] in ("completed", "in_progress") else None

    assert await wait_until(completed, timeout=180, interval=0.5, what="the access request to complete") == \
        "completed", "the case completed, not sent to review"

    package = await _package(dsn, request_id)
    consent = package["systems"]["consent"]
    assert consent["status"] == "done"
    history = consent["data"]["consent_history"]
    assert len(history) == CHANGES, "the whole consent history is in the package"
    assert sorted(h["policy_version"] for h in history) == [f"2026-{n:03d}" for n in range(CHANGES)]
    assert len(consent["data"]["consent_receipts"]) == CHANGES

    # It did travel in parts (the test means something), and every part was a valid message.
    acks = [e for e in (event_of(m) for m in await read_topic(bootstrap, PRIVACY_ACKS))
            if e is not None and e["subject"] == subject and e["data"]["system"] == "consent"]
    parts = [a["data"] for a in acks if a["data"].get("part") is not None]
    assert parts and {p["part"] for p in parts} == set(range(1, parts[0]["parts"] + 1)), "answered in parts"
    assert parts[0]["parts"] > 1

    after = await _dead_letter_offsets(bootstrap)
    landed = {f"{tp.topic}[{tp.partition}]": after[tp] - before.get(tp, 0)
              for tp in after if after[tp] != before.get(tp, 0)}
    assert not landed, f"nothing lands on a dead-letter topic: {landed}"
