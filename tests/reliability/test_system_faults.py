"""Faults across the whole system lose nothing and duplicate nothing.

The three services run as real processes beside a player of the 8 external systems (it acknowledges
every command on `privacy-acks`, billing answers `erase` with `retained`). A mixed workload of more than
10,000 events is published over time in three waves:

1. registrations with an email address (600 subjects, so the notifier's directory has them) and
   consent changes: grants, email-footer opt-outs and Global Privacy Control signals;
2. once the registrations are applied: verified erasure requests and restriction, rectification and
   access requests for some of the registered subjects;
3. once the erasures and restrictions are completed: one merger notice fanned out to the directory.

The waves wait for each other as real callers would (a request follows the registration it is about, and
a notice reaches whoever is in the directory when it is sent), so the expected state does not depend on
timing. Each subject's consent changes only ever withdraw what was granted before, so the commands they
cause are the same however the events are batched.

Meanwhile, at points drawn from a seeded random.Random: each service is SIGKILLed and restarted, the
Kafka broker is restarted, PostgreSQL is restarted and the SMTP sink is down for a few seconds; during
the merger fan-out the notifier is SIGKILLed again and the sink answers 451 for a while.

Afterwards the state is compared with what a run without faults gives (computed from the workload):
ledger rows, current consent, the commands of the consent and dsar services (in their tables and as the
systems saw them on Kafka), case statuses, emails per notification (counted in the sink's `.eml` files
by Message-ID, which the notifier derives from the notification id), keys of erased subjects, dead
letters. The report is printed and written to var/reports/faults-system.json.

The run is isolated from the rest of the session and waits on conditions only (see system_run.py).

What is not deterministic is not asserted: the `received` email of an erasure request may be cancelled
by the erasure itself when it was still queued (the notifier sends an erased subject nothing but the
erasure confirmation), so it counts as delivered at most once. A message the SMTP relay accepted just
before the sender was killed (or the relay went down) is sent again with the same Message-ID once its
lease expires (the documented crash window of services/notifier/delivery.py): such a copy is reported
in `smtp_redeliveries` and accepted only when its first copy was the last message of an SMTP session
one of those faults ended, one per notifier process it cut off (these runs pin SMTP_CONNECTIONS=1 and
EMAILS_PER_SEND_TRANSACTION=1, so a sender has one message in flight); any other second copy is a
duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from devstack.stack import Stack
from tests.helpers import ServiceProcess
from tests.reliability.system_run import (
    ACCESSES,
    CONSENT_ONLY,
    ERASURES,
    RECTIFICATIONS,
    REGISTERED,
    RESTRICTIONS,
    SEED,
    Faults,
    Progress,
    Systems,
    assert_nothing_lost_or_duplicated,
    assess,
    build_workload,
    isolated_system,
    publish_merger,
    run_waves_1_2,
    settle_and_observe,
    write_report,
)

pytestmark = [pytest.mark.stack, pytest.mark.faults]

#: Generous: a limit only matters when something is wrong (every wait ends on its condition).
SETTLE_LIMIT = 300.0


async def test_faults_across_the_system_lose_and_duplicate_nothing(stack: Stack) -> None:
    rng = random.Random(SEED)
    w = build_workload(rng)
    bootstrap = stack.endpoints.kafka_bootstrap

    # The broker restart makes every client log connection errors; they are expected, not news.
    kafka_log = logging.getLogger("aiokafka")
    kafka_log_level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    services: dict[str, ServiceProcess] = {}
    systems = Systems(bootstrap, w.prefix)
    try:
        async with isolated_system(stack, w.run) as system:
            dsn = system.dsn
            services["consent"] = system.process("consent", "")
            services["dsar"] = system.process("dsar", "")
            services["notifier"] = system.process("notifier", services["consent"].url)
            faults = Faults(stack, system, services, rng)
            try:
                for service in list(services.values()):
                    await service.wait_ready(timeout=90)
                await systems.start()
                began = faults.began = time.monotonic()  # timings and faults count from the workload's start
                faults.began_wall = time.time()
                progress = Progress(began, SETTLE_LIMIT)

                # Faults while waves 1 and 2 run, at seeded random points.
                schedule: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
                    (rng.uniform(1, 6), "consent", lambda: faults.kill_and_restart("consent")),
                    (rng.uniform(4, 12), "kafka", faults.restart_kafka),
                    (rng.uniform(6, 16), "dsar", lambda: faults.kill_and_restart("dsar")),
                    (rng.uniform(8, 18), "smtp", lambda: faults.smtp_down(rng.uniform(3, 6))),
                    (rng.uniform(10, 20), "postgres", faults.restart_postgres),
                    (rng.uniform(5, 20), "notifier", lambda: faults.kill_and_restart("notifier")),
                ]
                fault_task = asyncio.create_task(faults.run_schedule(schedule))
                await run_waves_1_2(bootstrap, dsn, w, fault_task, progress)

                # Wave 3: the merger notice, with a notifier crash and an SMTP refusal during its fan-out.
                await publish_merger(stack, bootstrap, w, rng, progress)
                await faults.kill_and_restart("notifier")
                await faults.smtp_refusing(rng.uniform(2, 4))
                progress.reached("wave_3_faults_done")
                outcome = await settle_and_observe(stack, system, w, progress)
            finally:
                for service in services.values():
                    service.stop()
    finally:
        if stack.smtp is not None:
            stack.smtp.refuse(False)
            await stack.smtp.start()  # no-op unless a failure left it stopped
        await systems.stop()
        kafka_log.setLevel(kafka_log_level)

    report: dict[str, Any] = {"seed": SEED, "faults": faults.injected, "events_sent": w.events,
              "workload": {"consent_only_subjects": CONSENT_ONLY, "registered_subjects": REGISTERED,
                           "erasures": ERASURES, "restrictions": RESTRICTIONS, "rectifications": RECTIFICATIONS,
                           "accesses": ACCESSES, "merger_notices": 1},
              "timings_seconds": {k: round(v, 1) for k, v in progress.timings.items()}, "notes": progress.notes}
    report.update(assess(w, outcome.seen, outcome.mailbox, systems, outcome.dead_letters, faults))
    write_report("system", report)
    assert_nothing_lost_or_duplicated(w, report)
