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
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from devstack.stack import Stack
from tests.helpers import ServiceProcess
from tests.reliability.system_run import (
    SEED,
    SERVICES,
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

SETTLE_LIMIT = 300.0  # a limit only matters when something is wrong


async def test_replicas_in_one_group_lose_and_duplicate_nothing(stack: Stack) -> None:
    rng = random.Random(SEED + 2)
    w = build_workload(rng)
    bootstrap = stack.endpoints.kafka_bootstrap

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
                progress = Progress(began, SETTLE_LIMIT)

                # One process of each service killed and restarted while waves 1 and 2 run.
                def restart(label: str) -> Callable[[], Awaitable[None]]:
                    return lambda: faults.kill_and_restart(label)

                schedule = [(rng.uniform(1, 12), service, restart(f"{service}-a")) for service in SERVICES]
                fault_task = asyncio.create_task(faults.run_schedule(schedule))
                await run_waves_1_2(bootstrap, dsn, w, fault_task, progress)

                # Wave 3: the merger notice; the other notifier dies for good while it is being sent.
                await publish_merger(stack, bootstrap, w, rng, progress)
                faults.kill("notifier-b")
                progress.reached("wave_3_kill")
                outcome = await settle_and_observe(stack, system, w, progress)
            finally:
                for service in services.values():
                    service.stop()
    finally:
        await systems.stop()
        kafka_log.setLevel(kafka_log_level)

    report: dict[str, Any] = {"seed": SEED + 2, "processes_per_service": 2, "faults": faults.injected,
                              "events_sent": w.events,
                              "timings_seconds": {k: round(v, 1) for k, v in progress.timings.items()},
                              "notes": progress.notes}
    report.update(assess(w, outcome.seen, outcome.mailbox, systems, outcome.dead_letters, faults))
    write_report("replicas", report)
    assert_nothing_lost_or_duplicated(w, report)
