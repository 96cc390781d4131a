"""Workload 2: consent change -> downstream command latency at a fixed 1,000 events/s.

Subjects in Sweden registered with a `marketing_email` grant withdraw it from the email footer, at
a fixed rate (open loop); each withdrawal must come out as one `suppress` on
privacy-commands.marketing_email (Kafka key = subject). Latency runs from handing the event to the
producer to the command reaching a consumer that waits at the end of the command topic.
Baseline: one plain Kafka hop (produce -> consume) at the same rate on a scratch topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer

from bench import events, kafka
from bench.core import (
    Bench,
    Figure,
    Samples,
    Target,
    diff_metrics,
    histogram_quantile,
    metric,
    open_loop,
    percentiles,
    wait_for,
)
from bench.profile import profiled
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED, command_topic

WORKLOAD = "change_latency"
ECHO_TOPIC = "bench-echo"


async def tail_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer positioned at the current end of every partition, fetching with a 5 ms wait."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    tps = await kafka.partitions(bootstrap, topic)
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve now, so nothing published from here on is missed
    return consumer


async def measure(bootstrap: str, out_topic: str, in_topic: str, count: int, make: Callable[[int], kafka.Record],
                  rate: float, match: Callable[[bytes], bool], grace: float) -> tuple[list[float], int]:
    """Publish `make(i)` for i < count to `out_topic` at `rate` (built when sent, so event time = send
    time); latencies (ms) of their answers on `in_topic`, matched by key."""
    consumer = await tail_consumer(bootstrap, in_topic)
    producer = kafka.producer(bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[bytes, float] = {}
    latencies: dict[bytes, float] = {}
    done = asyncio.Event()

    async def collect() -> None:
        while not done.is_set() or len(latencies) < len(sent):
            batches = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    key = message.key
                    if key in sent and key not in latencies and match(message.value):
                        latencies[key] = 1000 * (now - sent[key])

    async def fire(i: int, scheduled: float) -> None:
        key, value = make(i)
        sent[key] = time.perf_counter()
        await producer.send(out_topic, key=key, value=value)

    collector = asyncio.create_task(collect())
    try:
        await open_loop(rate, count / rate, fire)
        await producer.flush()
        done.set()
        try:
            await asyncio.wait_for(asyncio.shield(collector), timeout=grace)
        except TimeoutError:
            pass
    finally:
        collector.cancel()
        await producer.stop()
        await consumer.stop()
    return list(latencies.values()), len(sent) - len(latencies)


def _is_suppress(value: bytes) -> bool:
    return bool(orjson.loads(value)["data"]["action"] == "suppress")


async def run(bench: Bench) -> None:
    sizes = bench.sizes
    count = int(sizes.latency_rate * sizes.latency_seconds)
    run_id = uuid.uuid4().hex[:6]
    subjects = [f"lat-{run_id}-{i:05d}" for i in range(count)]
    service = await bench.start_service("consent")
    await kafka.wait_caught_up(bench.bootstrap, ["privacy-consent"], CONSENT_CHANGED)  # no backlog ahead
    await kafka.produce(bench.bootstrap, USER_REGISTERED,
                        events.registrations(subjects, grants=["marketing_email"], countries=["SE"]))
    bench.registered += len(subjects)
    conn = await bench.db()
    try:
        async def granted() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM consent.consent_state WHERE purpose = 'marketing_email' AND granted "
                "AND subject LIKE $1", f"lat-{run_id}-%") >= count)

        await wait_for(granted, timeout=120, interval=0.25, what="the registrations' grants in the ledger")
    finally:
        await conn.close()

    await kafka.create_scratch_topic(bench.bootstrap, ECHO_TOPIC, 4)
    echo_count = int(sizes.latency_rate * sizes.echo_seconds)
    await measure(bench.bootstrap, ECHO_TOPIC, ECHO_TOPIC, 200, lambda i: (f"warm-{i}".encode(), b"x"),
                  sizes.latency_rate, lambda value: True, grace=10)
    echo_ms, _ = await measure(bench.bootstrap, ECHO_TOPIC, ECHO_TOPIC, echo_count,
                               lambda i: (f"echo-{i}".encode(), b"x" * 300), sizes.latency_rate,
                               lambda value: True, grace=10)

    before = await service.metrics()
    with bench.phase(WORKLOAD), profiled(bench, WORKLOAD, "consent", rate=20):
        ours_ms, lost = await measure(
            bench.bootstrap, CONSENT_CHANGED, command_topic("marketing_email"),
            count, lambda i: events.withdrawal(subjects[i]), sizes.latency_rate, _is_suppress, grace=20)
    delta = diff_metrics(await service.metrics(), before)

    ours = percentiles(ours_ms)
    baseline = percentiles(echo_ms)
    label = f"consent change -> suppress command @{sizes.latency_rate:,}/s"
    bench.latencies[label] = ours
    bench.latencies[f"Kafka one hop @{sizes.latency_rate:,}/s (baseline)"] = baseline
    note = f"{lost} of {count} commands not seen" if lost else ""
    bench.add(Figure(WORKLOAD, f"{label}, p99", "ms", ours.get("p99"), baseline.get("p99"),
                     "Kafka produce->consume, one hop", Target("<", 50), note=note))
    bench.add(Figure(WORKLOAD, f"{label}, p50", "ms", ours.get("p50"), baseline.get("p50"),
                     "Kafka produce->consume, one hop"))
    bench.detail(WORKLOAD, events=count, rate=sizes.latency_rate, lost=lost, latency_ms=ours, baseline_ms=baseline,
                 where_the_time_goes=_breakdown(delta, ours))


def _breakdown(delta: Samples, ours: dict[str, float]) -> dict[str, object]:
    """Split the mean: publish -> ledger commit (the service's delay histogram), then outbox -> command."""
    topic = {"topic": CONSENT_CHANGED}
    batches = metric(delta, "privacy_event_processing_seconds_count", **topic)
    in_apply = metric(delta, "privacy_event_processing_seconds_sum", **topic)
    delayed = metric(delta, "privacy_event_delay_seconds_count", **topic)
    delay_ms = 1000 * metric(delta, "privacy_event_delay_seconds_sum", **topic) / delayed if delayed else None
    p99_bound = histogram_quantile(delta, "privacy_event_delay_seconds", 0.99, **topic)
    tx_p99 = histogram_quantile(delta, "privacy_event_processing_seconds", 0.99, **topic)
    return {
        "events in": metric(delta, "privacy_events_consumed_total", **topic),
        "batches": batches,
        "mean batch (events)": round(delayed / batches, 1) if batches else None,
        "mean batch transaction (ms)": round(1000 * in_apply / batches, 2) if batches else None,
        "publish -> ledger commit, mean (ms)": round(delay_ms, 1) if delay_ms else None,
        "publish -> ledger commit, p99 (histogram bucket bound, ms)": 1000 * p99_bound if p99_bound else None,
        "batch transaction, p99 (histogram bucket bound, ms)": 1000 * tx_p99 if tx_p99 else None,
        "publish -> command seen, mean (ms)": round(ours["mean"], 1) if "mean" in ours else None,
        "ledger commit -> command seen (outbox relay + Kafka hop), mean (ms)":
            round(ours["mean"] - delay_ms, 1) if delay_ms and "mean" in ours else None,
    }
