"""`python -m bench.office_pages [--cases 10000]`: how fast the privacy office renders its pages with
many cases in the database. Prints p50/p95/max per page; asserts nothing about time.

It starts a stack of its own (var/bench-office-<pid>, removed afterwards), the three services and the
office as processes, then fills the dsar schema directly through the service's own store (cases in
every status and right, received over the last 16 weeks, about a third completed) and an audit chain
of ten entries per case (hashed as the service hashes them), so that the queue, the charts, the case
timeline and the chain verification all read realistic volumes. Then each page is fetched by a signed-in
operator, one request at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from devstack.stack import Stack, default_var_dir
from privacy_runtime.audit import _LOCK_KEY as AUDIT_LOCK_KEY
from privacy_runtime.audit import GENESIS, entry_hash
from schemas.enums import ErasureGround, ObjectionProcessing, RequestedVia
from services.dsar import cases, store
from tests.helpers import TEST_ADMIN_TOKEN, ServiceProcess

TOKEN = "bench-operator-token"
AUDIT_PER_CASE = 10


def say(message: str) -> None:
    print(f"[bench.office] {message}", file=sys.stderr, flush=True)


def make_case(number: int, now: datetime, rng: random.Random) -> cases.Case:
    received = now - timedelta(seconds=rng.uniform(0, 16 * 7 * 86400))
    right = rng.choice(cases.RIGHTS)
    case = cases.new_case(request_id=str(uuid.uuid4()), subject=f"bench-{number:06d}", right=right,
                          received_at=received, identity_verified=True, requested_via=RequestedVia.WEB_FORM,
                          ground=ErasureGround.NO_LONGER_NECESSARY if right == cases.ERASURE else None,
                          processing=ObjectionProcessing.LEGITIMATE_INTEREST if right == cases.OBJECTION else None)
    roll = rng.random()
    if roll < 0.35:
        closed = min(now, received + timedelta(days=rng.uniform(0.1, 28)))
        return replace(case, status=cases.COMPLETED, closed_at=closed)
    if roll < 0.45:
        return replace(case, status=cases.REJECTED, closed_at=received + timedelta(days=2), reason="bench")
    if roll < 0.60:
        return replace(case, status=cases.IN_PROGRESS, manual_review=True, review_reason="bench review")
    if roll < 0.70:
        return replace(case, status=cases.IDENTITY_PENDING)
    return replace(case, status=cases.AWAITING_SYSTEMS)


async def fill(dsn: str, count: int) -> list[str]:
    """`count` cases and their audit entries in the dsar schema; returns some request ids."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "dsar"})
    try:
        made = [make_case(n, now, rng) for n in range(count)]
        async with conn.transaction():
            for case in made:
                await store.insert_case(conn, case, None)
        transaction = conn.transaction()
        await transaction.start()
        # The service appends to the chain meanwhile: hold the chain's lock as the service does.
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext(current_schema()))", AUDIT_LOCK_KEY)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (last["seq"], last["hash"]) if last else (0, GENESIS)
        rows = []
        for case in made:
            for step in range(AUDIT_PER_CASE):
                seq += 1
                at = case.received_at + timedelta(minutes=step)
                at = at.replace(microsecond=at.microsecond)  # PostgreSQL keeps microseconds: the hash survives
                detail = {"right": case.right, "step": step}
                digest = entry_hash(prev, seq, at, "case_bench", "service:dsar", case.subject, case.request_id, detail)
                rows.append((seq, at, "case_bench", "service:dsar", case.subject, case.request_id,
                             json.dumps(detail), prev, digest))
                prev = digest
        await conn.copy_records_to_table("audit_log", records=[
            (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows],
            columns=["seq", "at", "action", "actor", "subject", "ref", "detail", "prev_hash", "hash"])
        await transaction.commit()
        await conn.execute("ANALYZE cases; ANALYZE audit_log")
    finally:
        await conn.close()
    return [c.request_id for c in made[:: max(1, count // 20)]]


async def measure(url: str, pages: list[tuple[str, str]], rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name, _ in pages}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        page = (await client.get("/sign-in")).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf, "no sign-in form"
        answer = await client.post("/sign-in", data={"csrf_token": csrf.group(1), "token": TOKEN})
        assert answer.status_code in (200, 303) and "Signed in as" in (await client.get("/")).text
        for _name, path in pages:  # one warm-up each (first templates compiled, pools filled)
            assert (await client.get(path)).status_code == 200, path
        for _ in range(rounds):
            for name, path in pages:
                began = time.perf_counter()
                response = await client.get(path)
                timings[name].append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (path, response.status_code)
    return timings


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.office_pages", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    var_dir = default_var_dir()
    stack = Stack(var_dir / f"bench-office-{__import__('os').getpid()}", cache_dir=var_dir, durable=False,
                  cleanup=True)
    running: list[ServiceProcess] = []
    try:
        await stack.start()
        env = stack.env()
        for name in ("consent", "dsar", "notifier"):
            running.append(ServiceProcess(name, env).start())
        for service in running:
            await service.wait_ready(timeout=180)
        urls = {s.name: s.url for s in running}
        office = ServiceProcess("office", env, {
            "OFFICE_OPERATORS": f"bench:{hashlib.sha256(TOKEN.encode()).hexdigest()}",
            "DSAR_URL": urls["dsar"], "CONSENT_URL": urls["consent"], "NOTIFIER_URL": urls["notifier"]}).start()
        running.append(office)
        await office.wait_ready(timeout=180)
        began = time.monotonic()
        sample = await fill(env["DATABASE_URL"], args.cases)
        say(f"{args.cases} cases and {args.cases * AUDIT_PER_CASE} audit entries written in "
            f"{time.monotonic() - began:.1f}s")
        pages = [("overview /", "/"), ("queue /cases", "/cases"),
                 ("queue, overdue", "/cases?overdue=true"),
                 ("queue, review + right", "/cases?review=true&right=erasure"),
                 ("queue, page 50", "/cases?page=50"), ("search by subject", "/cases?q=bench-000123"),
                 ("case page", f"/cases/{sample[3]}"), ("intake", "/intake"), ("systems", "/systems"),
                 ("dead letters", "/dead-letters"), ("audit (verifies every chain)", "/audit")]
        timings = await measure(office.url, pages, args.rounds)
        # What "Verify now" costs: every walk of the dsar chain (the service answers the audit page with its
        # latest walk, at most AUDIT_VERIFY_MAX_AGE_SECONDS old).
        walks: list[float] = []
        async with httpx.AsyncClient(timeout=120) as client:
            for _ in range(3):
                began_walk = time.perf_counter()
                answer = await client.get(f"{urls['dsar']}/v1/admin/audit/verify", params={"fresh": "true"},
                                          headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
                walks.append((time.perf_counter() - began_walk) * 1000)
                assert answer.json()["ok"], answer.text
        timings["dsar chain walked now (fresh)"] = walks
        print(f"\nPrivacy office with {args.cases:,} cases ({args.cases * AUDIT_PER_CASE:,} dsar audit entries), "
              f"{args.rounds} requests per page, one at a time:\n")
        print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, samples in timings.items():
            print(f"{name:34} {statistics.median(samples):8.1f} {p95(samples):8.1f} {max(samples):8.1f}")
        results = Path(__file__).with_name("results")
        results.mkdir(exist_ok=True)
        out = results / f"office-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps({"cases": args.cases, "rounds": args.rounds, "pages": {
            name: {"p50_ms": statistics.median(s), "p95_ms": p95(s), "max_ms": max(s)} for name, s in timings.items()
        }}, indent=2))
        print(f"\n(written to {out})")
        return 0
    finally:
        for service in running:
            service.stop()
        await stack.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
