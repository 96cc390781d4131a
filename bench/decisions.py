"""Workload 3: the decision API, GET /v1/decisions, at 1,000 requests/s (open loop) and flat out.

An aiohttp client with keep-alive fires requests on a fixed schedule whatever the answers do
(latency counts from the scheduled time, so a stall is not hidden); then 32 clients in a closed
loop give the maximum throughput: the median of a few short windows, each followed by one of the
baseline's, so that both sides of the ratio see the machine in the same state. Baseline: the service's
own decision query (`store.profile_and_state`) straight through asyncpg at the same rate and flat
out, i.e. what the database alone allows.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import aiohttp
import asyncpg

from bench import events, kafka
from bench.core import Bench, Figure, Target, diff_metrics, histogram_quantile, metric, open_loop, percentiles, wait_for
from bench.profile import profiled
from schemas.topics import CONSENT_CHANGED, USER_REGISTERED
from services.consent import store

WORKLOAD = "decisions"
DECISION_PURPOSES = ("marketing_email", "partner_sharing", "analytics", "group_sharing", "profiling",
                     "service_delivery", "third_party_marketing")


async def paced(rate: float, seconds: float, call: Callable[[int], Awaitable[bool]]) -> tuple[list[float], int]:
    """Open loop: start `call(i)` on schedule; latencies (ms, from the scheduled time) and failures."""
    latencies: list[float] = []
    failures = 0
    running: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        nonlocal failures
        ok = await call(i)
        latencies.append(1000 * (time.perf_counter() - scheduled))
        failures += not ok

    async def fire(i: int, scheduled: float) -> None:
        task = asyncio.create_task(one(i, scheduled))
        running.add(task)
        task.add_done_callback(running.discard)

    await open_loop(rate, seconds, fire)
    if running:
        await asyncio.wait(running, timeout=30)
    return latencies, failures


async def flat_out(seconds: float, concurrency: int, call: Callable[[int], Awaitable[bool]]) -> float:
    """Closed loop: `concurrency` callers back to back for `seconds`; completed calls/s."""
    done = 0
    end = time.perf_counter() + seconds

    async def caller(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < end:
            await call(i)
            done += 1
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(concurrency)))
    return done / (time.perf_counter() - began)


async def run(bench: Bench) -> None:
    sizes = bench.sizes
    service = await bench.start_service("consent")
    await kafka.wait_caught_up(bench.bootstrap, ["privacy-consent"], CONSENT_CHANGED)  # the service is idle
    run_id = uuid.uuid4().hex[:6]
    subjects = [f"dec-{run_id}-{i:05d}" for i in range(sizes.decision_subjects)]
    await kafka.produce(bench.bootstrap, USER_REGISTERED, events.registrations(subjects, grants=["analytics"]))
    bench.registered += len(subjects)
    conn = await bench.db()
    try:
        async def known() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM consent.subjects WHERE subject LIKE $1",
                                            f"dec-{run_id}-%") >= len(subjects))

        await wait_for(known, timeout=120, interval=0.25, what="decision subjects in the consent schema")
    finally:
        await conn.close()

    rng = random.Random(3)
    queries = [(rng.choice(subjects), rng.choice(DECISION_PURPOSES)) for _ in range(5000)]
    urls = [f"{service.url}/v1/decisions?{urlencode({'subject': s, 'purpose': p})}" for s, p in queries]
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    pool = await asyncpg.create_pool(bench.endpoints.database_url, min_size=10, max_size=10,
                                     server_settings={"search_path": "consent"})
    assert pool is not None
    try:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def http_call(i: int) -> bool:
                async with session.get(urls[i % len(urls)]) as response:
                    await response.read()
                    return response.status == 200

            async def db_call(i: int) -> bool:
                subject, purpose = queries[i % len(queries)]
                async with pool.acquire() as conn:
                    profile, _ = await store.profile_and_state(conn, subject, purpose)
                return profile is not None

            await paced(200, 1.0, http_call)  # warm up connections and the service's pool
            before = await service.metrics()
            with bench.phase(WORKLOAD), profiled(bench, WORKLOAD, "consent", rate=20):
                latencies, failures = await paced(sizes.decision_rate, sizes.decision_seconds, http_call)
                delta = diff_metrics(await service.metrics(), before)
            await paced(200, 0.5, db_call)
            db_latencies, _ = await paced(sizes.decision_rate, min(sizes.decision_seconds, 5.0), db_call)
            windows: list[float] = []
            db_windows: list[float] = []
            for _ in range(sizes.closed_loop_rounds):  # side by side in time, so drift hits both alike
                with bench.phase(WORKLOAD):
                    windows.append(await flat_out(sizes.closed_loop_seconds, sizes.closed_loop_concurrency, http_call))
                db_windows.append(await flat_out(sizes.closed_loop_seconds, sizes.closed_loop_concurrency, db_call))
    finally:
        await pool.close()
    max_rps, db_max = statistics.median(windows), statistics.median(db_windows)

    ours = percentiles(latencies)
    baseline = percentiles(db_latencies)
    label = f"decision API @{sizes.decision_rate:,} req/s"
    bench.latencies[label] = ours
    bench.latencies[f"bare asyncpg decision query @{sizes.decision_rate:,}/s (baseline)"] = baseline
    note = f"{failures} non-200 answers" if failures else ""
    bench.add(Figure(WORKLOAD, f"{label}, p99", "ms", ours.get("p99"), baseline.get("p99"),
                     "same SQL, bare asyncpg", Target("<", 10), note=note))
    bench.add(Figure(WORKLOAD, f"{label}, p50", "ms", ours.get("p50"), baseline.get("p50"), "same SQL, bare asyncpg"))
    bench.add(Figure(WORKLOAD, f"decision API max throughput ({sizes.closed_loop_concurrency} clients)", "req/s",
                     max_rps, db_max, "same SQL, bare asyncpg"))
    route = {"route": "decisions"}
    served = metric(delta, "privacy_http_request_seconds_count", **route)
    in_handler = metric(delta, "privacy_http_request_seconds_sum", **route)
    server_p99 = histogram_quantile(delta, "privacy_http_request_seconds", 0.99, **route)
    bench.detail(WORKLOAD, requests=len(latencies), failures=failures, latency_ms=ours, baseline_ms=baseline,
                 max_requests_per_second=max_rps, baseline_max_per_second=db_max,
                 closed_loop_windows={"service": windows, "bare query": db_windows}, where_the_time_goes={
                     "client-observed p99 (ms)": ours.get("p99"),
                     "in the service's handler, mean (ms)": round(1000 * in_handler / served, 3) if served else None,
                     "in the service's handler, p99 (bucket bound, ms)": 1000 * server_p99 if server_p99 else None,
                     "the database query alone, p99 (ms)": baseline.get("p99"),
                     "rest: HTTP server, event loop, client": "client-observed minus handler time",
                 })
