"""Two processes of every service in one consumer group: SIGKILLs lose and duplicate nothing.

Production runs several replicas of each service in one consumer group. Here two processes each of
consent, dsar and the notifier share their service's group and database, and take the system fault
run's workload (tests/reliability/system_run.py: more than 10,000 events in three waves, the same
expected state and the same checks). While waves 1 and 2 run, one process of each service is SIGKILLed
at a seeded random point and started again a moment later: the group rebalances when the new member
joins and again when the dead one's session times out, and the survivor takes the dead one's partitions
meanwhile (uncommitted batches are consumed again and deduplicated). During the merger fan-out the
other notifier is SIGKILLed for good: the surviving notifier finishes the fan-out and retakes the rows
the dead one had claimed once their lease expires.

The report (var/reports/faults-replicas.json) has the same form as the system fault run's, with missing 0
and duplicated 0 required. A second copy of an email is accepted only as the crash window of a killed
notifier (see system_run.py), one per killed process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from services.dsar import cases
from tests.helpers import ROOT, ServiceProcess
from tests.reliability.system_run import (
    SEED,
    SERVICES,
    Faults,
    Systems,
    assess,
    build_workload,
    count_dead_letters,
    delivered,
    isolated_system,
    mail_files,
    observe,
    poll,
    publish_paced,
    query,
    wait_settled,
)

pytestmark = [pytest.mark.stack, pytest.mark.faults]

SETTLE_LIMIT = 300.0  # a limit only matters when something is wrong


async def test_replicas_in_one_group_lose_and_duplicate_nothing(stack: Stack) -> None:
    rng = random.Random(SEED + 2)
    w = build_workload(rng)
    bootstrap = stack.endpoints.kafka_bootstrap
    timings: dict[str, float] = {}
    notes: list[str] = []

    kafka_log = logging.getLogger("aiokafka")  # rebalances and dead members make the clients chatty
    kafka_log_level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    services: dict[str, ServiceProcess] = {}
    systems = Systems(bootstrap, w.prefix)
    try:
        async with isolated_system(stack, w.run) as system:
            dsn = system.dsn
            for replica in ("a", "b"):
                services[f"consent-{replica}"] = system.process("consent", "")
            for replica in ("a", "b"):
                services[f"dsar-{replica}"] = system.process("dsar", "")
                services[f"notifier-{replica}"] = system.process("notifier", services["consent-b"].url)
            faults = Faults(stack, system, services, rng)
            try:
                for service in list(services.values()):
                    await service.wait_ready(timeout=120)
                await systems.start()
                began = faults.began = time.monotonic()
                faults.began_wall = time.time()

                # One process of each service killed and restarted while waves 1 and 2 run.
                def restart(label: str) -> Callable[[], Awaitable[None]]:
                    return lambda: faults.kill_and_restart(label)

                schedule = [(rng.uniform(1, 12), service, restart(f"{service}-a")) for service in SERVICES]
                fault_task = asyncio.create_task(faults.run_schedule(schedule))
                first = asyncio.create_task(publish_paced(bootstrap, w.first_wave, chunk=250, pause=0.5))
                registered = list(w.registered)

                async def registrations_applied() -> bool:
                    async def count(conn: asyncpg.Connection) -> bool:
                        ledger = await conn.fetchval(
                            "SELECT count(DISTINCT subject) FROM consent.consent_ledger "
                            "WHERE subject = ANY($1::text[]) AND channel = 'registration'", registered)
                        directory = await conn.fetchval(
                            "SELECT count(*) FROM notifier.recipients WHERE subject = ANY($1::text[])", registered)
                        return bool(ledger == len(registered) and directory == len(registered))

                    return bool(await query(dsn, count))

                if not await poll(registrations_applied, timeout=SETTLE_LIMIT):
                    notes.append(f"registrations were not all applied within {SETTLE_LIMIT:.0f} s")
                timings["registrations_applied"] = time.monotonic() - began
                await publish_paced(bootstrap, w.second_wave, chunk=12, pause=0.5)
                await first
                timings["waves_1_2_published"] = time.monotonic() - began
                await fault_task

                erasing = [uuid.UUID(r) for r, (_, right) in w.requests.items()
                           if right in (cases.ERASURE, cases.RESTRICTION)]

                async def erasures_and_restrictions_done() -> bool:
                    done = await query(dsn, lambda c: c.fetchval(
                        "SELECT count(*) FROM dsar.cases WHERE request_id = ANY($1::uuid[]) AND status = 'completed'",
                        erasing))
                    return bool(done == len(erasing))

                if not await poll(erasures_and_restrictions_done, timeout=SETTLE_LIMIT):
                    notes.append(f"erasures and restrictions were not all completed within {SETTLE_LIMIT:.0f} s")
                timings["erasures_restrictions_completed"] = time.monotonic() - began

                # Wave 3: the merger notice; the other notifier dies for good while it is being sent.
                before = len(mail_files(stack, w.domain))
                await publish_paced(bootstrap, w.merger, chunk=1, pause=0)
                kill_after = rng.randrange(40, 200)

                async def some_merger_mail() -> bool:
                    return len(mail_files(stack, w.domain)) >= before + kill_after

                if not await poll(some_merger_mail, timeout=SETTLE_LIMIT, interval=0.2):
                    notes.append(f"{kill_after} merger emails had not arrived within {SETTLE_LIMIT:.0f} s")
                faults.kill("notifier-b")
                timings["wave_3_kill"] = time.monotonic() - began

                if (pending := await wait_settled(stack, system, w, timeout=SETTLE_LIMIT)) is not None:
                    notes.append(f"the system had not settled within {SETTLE_LIMIT:.0f} s: {pending}")
                timings["settled"] = time.monotonic() - began
                seen = await observe(dsn, w)
                mailbox = delivered(stack, w.domain)
                dead_letters = await count_dead_letters(bootstrap, w)
            finally:
                for service in services.values():
                    service.stop()
    finally:
        await systems.stop()
        kafka_log.setLevel(kafka_log_level)

    report: dict[str, Any] = {"seed": SEED + 2, "processes_per_service": 2, "faults": faults.injected,
                              "events_sent": w.events, "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
                              "notes": notes}
    report.update(assess(w, seen, mailbox, systems, dead_letters, faults))
    out = ROOT / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults-replicas.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print("\nFAULT REPORT (replicas):", json.dumps(report, indent=2, ensure_ascii=False))

    assert w.events >= 10_000
    assert report["missing"] == 0, report
    assert report["duplicated"] == 0, report
    assert report["dsar_cases"]["completed"] == len(w.requests), report
    assert report["consent_states"]["wrong"] == 0, report
    assert report["consent_commands"]["unacknowledged"] == 0 and report["dsar_commands"]["unacknowledged"] == 0, report
    assert report["emails"]["recorded_not_sent"] == 0 and report["emails"]["misaddressed"] == 0, report
    assert report["emails"]["merger_rows_of_erased"] == 0, report
    assert report["erased_subjects"] == {"keys_left": 0, "directory_entries_left": 0}, report
    assert report["dead_letters"] == 0, report
