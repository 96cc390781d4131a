"""Faults during a consent workload lose nothing and duplicate nothing.

10,000 events (5,000 registrations granting marketing email + 5,000 footer opt-outs) are published
while the consent service is SIGKILLed at random points and restarted, the Kafka broker is restarted
and PostgreSQL is restarted. The run has a database and a consumer group of its own (see
system_run.py) and waits on conditions only. Afterwards every subject has exactly its two ledger rows, marketing
email is denied for all, and exactly one suppress command exists per subject. The report is printed
and written to var/reports/faults-consent.json.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from devstack.stack import Stack
from schemas.envelope import new_event
from schemas.events import ConsentChanged, ConsentGrant, UserRegistered
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED
from tests.helpers import ROOT, ServiceProcess, wait_until
from tests.reliability.system_run import Message, isolated_system, lagging, send_reliably

pytestmark = [pytest.mark.stack, pytest.mark.faults]

SUBJECTS = 5000
SETTLE_LIMIT = 300.0  # a limit only matters when something is wrong


async def _produce(bootstrap: str, prefix: str, part: range) -> int:
    """Publish a part of the workload, every message at least once: what the broker fails to take (it
    restarts meanwhile) is sent again, the same bytes (a consumer sees a redelivery it deduplicates)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    base = datetime.now(UTC) - timedelta(hours=1)
    sent = 0
    try:
        chunk: list[Message] = []
        for i in part:
            subject = f"{prefix}-{i:05d}"
            registered = new_event(USER_REGISTERED, UserRegistered(
                email=f"{subject}@example.com", country="SE", source="web",
                consents=[ConsentGrant(purpose="marketing_email", granted=True)]),
                subject=subject, source="urn:test", time=base)
            opted_out = new_event(CONSENT_CHANGED, ConsentChanged(
                purpose="marketing_email", granted=False, channel="email_footer", policy_version="2021-10-30"),
                subject=subject, source="urn:test", time=base + timedelta(minutes=30))
            chunk += [(USER_REGISTERED, subject.encode(), registered.model_dump_json().encode()),
                      (CONSENT_CHANGED, subject.encode(), opted_out.model_dump_json().encode())]
            if len(chunk) >= 20 or i == part[-1]:
                await send_reliably(producer, chunk, time.monotonic() + SETTLE_LIMIT)
                sent += len(chunk)
                chunk = []
                await asyncio.sleep(0.05)  # spread each part over its fault
    finally:
        await producer.stop()
    return sent


async def _counts(dsn: str, prefix: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        like = f"{prefix}-%"
        return {
            "ledger_rows": await conn.fetchval("SELECT count(*) FROM consent.consent_ledger WHERE subject LIKE $1", like),
            "distinct_ledger_rows": await conn.fetchval(
                "SELECT count(DISTINCT (subject, effective_at, granted)) FROM consent.consent_ledger "
                "WHERE subject LIKE $1", like),
            "denied_states": await conn.fetchval(
                "SELECT count(*) FROM consent.consent_state WHERE subject LIKE $1 AND purpose = 'marketing_email' "
                "AND NOT granted", like),
            "suppress_commands": await conn.fetchval(
                "SELECT count(*) FROM consent.commands WHERE subject LIKE $1 AND action = 'suppress'", like),
            "subjects_with_one_suppress": await conn.fetchval(
                "SELECT count(*) FROM (SELECT subject FROM consent.commands WHERE subject LIKE $1 "
                "AND action = 'suppress' GROUP BY subject HAVING count(*) = 1) s", like),
        }
    finally:
        await conn.close()


async def test_kills_and_restarts_lose_and_duplicate_nothing(stack: Stack) -> None:
    rng = random.Random(7)
    prefix = f"fault{rng.randrange(10**6)}"
    bootstrap = stack.endpoints.kafka_bootstrap
    # Four parts: the next is published only once the kill before it has struck, so each of the three
    # kills finds work still to apply, however fast or slow the machine is.
    parts = [range(i * SUBJECTS // 4, (i + 1) * SUBJECTS // 4) for i in range(4)]
    faults: list[str] = []
    #: Ledger rows applied when each fault struck: a fault after the work was done would prove nothing.
    applied_at_fault: list[int] = []
    sent = 0

    async with isolated_system(stack, prefix) as system:  # its own database and consumer group
        dsn = system.dsn
        env = {"COMMAND_RESEND_BASE_SECONDS": "3600", "CONSUMER_GROUP": system.groups["consent"]}
        service = ServiceProcess("consent", system.stack_env, env).start()

        async def fault(name: str) -> None:
            faults.append(name)
            applied_at_fault.append((await _counts(dsn, prefix))["ledger_rows"])

        try:
            await service.wait_ready()
            for part in parts[:3]:
                producing = asyncio.create_task(_produce(bootstrap, prefix, part))
                # Kill while the service is applying the workload: once it has made progress since the
                # last fault (a killed member holds its partitions until its session times out, ~10 s).
                last = applied_at_fault[-1] if applied_at_fault else 0

                async def progressing(last: int = last) -> bool:
                    return (await _counts(dsn, prefix))["ledger_rows"] > last

                await wait_until(progressing, timeout=SETTLE_LIMIT, interval=0.2,
                                 what="the service to apply events again")
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                await fault("consent SIGKILL")
                service.kill()
                sent += await producing
                service = ServiceProcess("consent", system.stack_env, env, port=service.port).start()
                await service.wait_ready(timeout=120)
            producing = asyncio.create_task(_produce(bootstrap, prefix, parts[3]))
            if stack.kafka is not None:
                await fault("kafka broker restart")
                await stack.kafka.restart()
            if stack.postgres is not None:
                await fault("postgresql restart")
                await stack.postgres.restart()
            sent += await producing
            await fault("consent SIGKILL after the workload")
            service.kill()
            service = ServiceProcess("consent", system.stack_env, env, port=service.port).start()
            await service.wait_ready(timeout=120)

            consent_group = {"consent": system.groups["consent"]}

            async def settled() -> dict[str, int] | None:
                counts = await _counts(dsn, prefix)
                if counts["ledger_rows"] < 2 * SUBJECTS or counts["suppress_commands"] < SUBJECTS:
                    return None
                # Nothing still on its way: the group has committed the end of every topic it consumes.
                return None if await lagging(bootstrap, consent_group) else counts

            notes: list[str] = []
            try:
                await wait_until(settled, timeout=SETTLE_LIMIT, interval=1.0, what="the workload to be applied")
            except AssertionError:
                behind = await lagging(bootstrap, consent_group)
                notes.append(f"not settled within {SETTLE_LIMIT:.0f} s; group behind: {'; '.join(behind[:10])}")
            counts = await _counts(dsn, prefix)
        finally:
            service.stop()

    expected = {"ledger_rows": 2 * SUBJECTS, "distinct_ledger_rows": 2 * SUBJECTS, "denied_states": SUBJECTS,
                "suppress_commands": SUBJECTS, "subjects_with_one_suppress": SUBJECTS}
    report = {
        "faults": faults, "ledger_rows_applied_at_each_fault": applied_at_fault, "events_sent": sent,
        "effects_observed": counts, "notes": notes,
        "missing": sum(max(0, expected[k] - counts[k]) for k in expected),
        "duplicated": sum(max(0, counts[k] - expected[k]) for k in expected),
    }
    out = ROOT / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    Path(out / "faults-consent.json").write_text(json.dumps(report, indent=2))
    print("\nFAULT REPORT (consent):", json.dumps(report, indent=2))
    assert counts == expected, report
    kills = applied_at_fault[:3]
    assert all(0 < a < b < 2 * SUBJECTS for a, b in pairwise(kills)) and kills[-1] < 2 * SUBJECTS, \
        f"each kill should strike while the service is applying the workload: {report}"
