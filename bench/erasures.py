"""Workload 4: 1,000 erasures across the 8 downstream systems, time until every case is completed.

Needs consent, dsar and notifier. The bench plays the 8 external systems: one consumer on their
privacy-commands.<system> topics acknowledges every command on privacy-acks at once (billing
answers `retained`, as the data map says). Completion is read from dsar-status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from bench import events, kafka
from bench.core import Bench, Figure, Target
from bench.profile import profiled
from bench.round_trip import erasure_round_trip
from schemas.topics import (
    CONSENT_CHANGED,
    DSAR_STATUS,
    ERASURE_REQUESTED,
    EXTERNAL_SYSTEMS,
    PRIVACY_ACKS,
    USER_REGISTERED,
    command_topic,
)

WORKLOAD = "erasures"
STALL_SECONDS = 60.0


async def play_systems(bench: Bench, acked: Counter[str], ready: asyncio.Event) -> None:
    """Acknowledge every command to an external system as soon as it arrives."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    producer = kafka.producer(bench.bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    try:
        tps = [tp for system in EXTERNAL_SYSTEMS
               for tp in await kafka.partitions(bench.bootstrap, command_topic(system))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=50)
            for messages in batches.values():
                for message in messages:
                    command = orjson.loads(message.value)["data"]
                    key, value = events.ack(message.key.decode(), command)
                    await producer.send(PRIVACY_ACKS, key=key, value=value)
                    acked[command["system"]] += 1
    finally:
        await producer.stop()
        await consumer.stop()


async def run(bench: Bench) -> None:
    count = bench.sizes.erasures
    await bench.start_service("consent")  # first: the notifier is given its address
    if "dsar" not in bench.services:
        # dsar follows consent-changed for subject activity; the ingest workloads' 100,000s of changes
        # before this one are not this workload's work.
        await kafka.reset_group(bench.bootstrap, "privacy-dsar", CONSENT_CHANGED, to_end=True)
    await asyncio.gather(bench.start_service("dsar"), bench.start_service("notifier"))
    run_id = uuid.uuid4().hex[:6]
    subjects = [f"era-{run_id}-{i:05d}" for i in range(count)]
    await kafka.produce(bench.bootstrap, USER_REGISTERED,
                        events.registrations(subjects, grants=["marketing_email", "partner_sharing"]))
    bench.registered += len(subjects)

    await kafka.wait_caught_up(bench.bootstrap, [f"privacy-{s}" for s in ("consent", "dsar", "notifier")],
                               USER_REGISTERED)
    await kafka.wait_caught_up(bench.bootstrap, ["privacy-consent", "privacy-dsar"], CONSENT_CHANGED)

    status = await _tail(bench, [DSAR_STATUS, PRIVACY_ACKS])
    acked: Counter[str] = Counter()
    internal_acks: Counter[str] = Counter()
    ready = asyncio.Event()
    systems = asyncio.create_task(play_systems(bench, acked, ready))
    request_ids = {str(uuid.uuid4()): s for s in subjects}
    statuses: dict[str, str] = {}
    completed_at: dict[str, float] = {}
    #: seconds since the start when each status / each system's ack was last seen: the phases' ends.
    status_last: dict[str, float] = {}
    ack_first: dict[str, float] = {}
    ack_last: dict[str, float] = {}
    try:
        await asyncio.wait_for(ready.wait(), timeout=30)
        with bench.phase(WORKLOAD), profiled(bench, WORKLOAD, "consent", "dsar", "notifier", rate=20):
            began = time.perf_counter()
            await kafka.produce(bench.bootstrap, ERASURE_REQUESTED,
                                [events.erasure(subject, rid) for rid, subject in request_ids.items()])
            last_change = time.perf_counter()
            while (len(completed_at) < count and time.perf_counter() - last_change < STALL_SECONDS
                   and time.perf_counter() - began < bench.sizes.erasure_cap_seconds):
                batches = await status.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        data = orjson.loads(message.value)["data"]
                        now = time.perf_counter() - began
                        if message.topic == PRIVACY_ACKS:
                            ack_first.setdefault(data["system"], now)
                            ack_last[data["system"]] = now
                            if data["system"] not in EXTERNAL_SYSTEMS:
                                internal_acks[f'{data["system"]} {data["status"]}'] += 1
                            continue
                        rid = data.get("request_id")
                        if rid in request_ids:
                            statuses[rid] = data["status"]
                            status_last[data["status"]] = now
                            last_change = time.perf_counter()
                            if data["status"] == "completed":
                                completed_at.setdefault(rid, last_change - began)
    finally:
        systems.cancel()
        await asyncio.gather(systems, return_exceptions=True)
        await status.stop()
    bench.erased += len(completed_at)
    final = Counter(statuses.values())
    commands_per_request = round((sum(acked.values()) + sum(internal_acks.values())) / count)
    round_trip = await erasure_round_trip(
        bench.bootstrap, [events.erasure(subject, rid) for rid, subject in request_ids.items()],
        commands_per_request, statuses_per_request=4)
    if len(completed_at) == count:
        seconds, note = max(completed_at.values()), ""
    else:  # a lower bound: the time waited
        seconds = time.perf_counter() - began
        note = f"more than this: {len(completed_at)} of {count} completed; last states {dict(final)}"
    bench.add(Figure(WORKLOAD, f"{count:,} erasures across {len(EXTERNAL_SYSTEMS)} systems, all completed", "s",
                     seconds, round_trip, f"same messages round-tripped through the broker "
                     f"({commands_per_request} commands + acks per request)", Target("<", 30), note=note))
    bench.detail(WORKLOAD, broker_round_trip_seconds=round_trip)
    bench.detail(WORKLOAD, erasures=count, seconds_to_all_completed=seconds, completed=len(completed_at),
                 completion_seconds=sorted(completed_at.values())[:: max(1, count // 20)], where_the_time_goes={
                     "last status of each case": dict(final),
                     "acks sent by the 8 played systems": dict(acked),
                     "acks seen from the services themselves (system status)": dict(internal_acks),
                     "last status change seen, by status (s)": {k: round(v, 2) for k, v in status_last.items()},
                     "acks seen, by system: first and last (s)": {k: [round(ack_first[k], 2), round(v, 2)]
                                                                  for k, v in sorted(ack_last.items(),
                                                                                     key=lambda kv: kv[1])},
                 })


async def _tail(bench: Bench, topics: list[str]) -> AIOKafkaConsumer:
    """A consumer at the current end of `topics` (so it sees only what this workload causes)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    tps = [tp for topic in topics for tp in await kafka.partitions(bench.bootstrap, topic)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer
