"""Workload 7: consent ingest with 1, 2 and 4 partitions and 1 and 2 worker processes.

Each run starts clean: consent-changed deleted and created again with P partitions, the consent
schema dropped (the service migrates it back at start), the consumer group's offsets set to 0.
The W workers are started and the group is Stable with W members before the events are produced,
so a rebalance is not part of the figure; the figure runs from the first ledger commit to N rows.
Baseline per partition count: the raw aiokafka getmany + parse_event rate of the same topic.
Other services are stopped first, so only the consent workers compete for the two cores.
"""

from __future__ import annotations

import asyncio

from bench import events, kafka
from bench.consent_ingest import wait_for_ledger
from bench.core import Bench, Figure, wait_for
from schemas.topics import CONSENT_CHANGED

WORKLOAD = "scaling"
GROUP = "privacy-consent"


async def one_run(bench: Bench, records: list[kafka.Record], partitions: int, workers: int) -> float:
    await kafka.recreate_topic(bench.bootstrap, CONSENT_CHANGED, partitions)
    conn = await bench.db()
    try:
        await conn.execute("DROP SCHEMA IF EXISTS consent CASCADE")
    finally:
        await conn.close()
    await kafka.reset_group(bench.bootstrap, GROUP, CONSENT_CHANGED)
    keys = [f"consent-w{n + 1}" for n in range(workers)]
    try:
        for key in keys:  # one after the other: the first applies the migrations
            await bench.start_service("consent", key=key)

        async def stable() -> bool:
            state, members = await kafka.group_members(bench.bootstrap, GROUP)
            return state == "Stable" and members == workers

        await wait_for(stable, timeout=90, interval=0.5, what=f"{workers} consent worker(s) in a stable group")
        await asyncio.sleep(1.0)  # partitions assigned and fetching
        with bench.phase(WORKLOAD):
            await kafka.produce(bench.bootstrap, CONSENT_CHANGED, records)
            rows, seconds = await wait_for_ledger(bench.endpoints.database_url, len(records),
                                                  bench.sizes.scaling_cap_seconds)
        return rows / seconds
    finally:
        for key in keys:
            bench.stop_service(key)


async def run(bench: Bench) -> None:
    bench.stop_all()
    count = bench.sizes.scaling_events
    subjects = [f"scale-{i:05d}" for i in range(max(100, count // 10))]
    records = events.consent_changes(subjects, count, seed=21)
    runs = []
    for partitions in bench.sizes.scaling_partitions:
        raw: float | None = None
        for workers in bench.sizes.scaling_workers:
            rate = await one_run(bench, records, partitions, workers)
            if raw is None:
                raw = await kafka.raw_consume(bench.bootstrap, CONSENT_CHANGED, count, parse=True)
            runs.append({"partitions": partitions, "workers": workers, "events_per_second": rate,
                         "raw_parse_per_second": raw})
            bench.add(Figure(WORKLOAD, f"consent ingest, {partitions} partition(s) x {workers} worker(s)",
                             "events/s", rate, raw, "raw aiokafka getmany + parse_event"))
    bench.detail(WORKLOAD, events_per_run=count, runs=runs)
