"""`python -m bench [--quick] [--only a,b]`: run the benchmarks on a stack of their own, print one table.

The stack (Kafka, PostgreSQL, SMTP sink) is started under var/bench-<pid> and removed afterwards.
Environment variables naming external servers are ignored on purpose: the bench recreates topics
and drops schemas, which must never happen to real infrastructure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import change_latency, consent_ingest, decisions, erasures, fanout, memory, report, scaling
from bench.core import Bench, NotAvailable, Sizes
from devstack.stack import Stack, default_var_dir

RESULTS = Path(__file__).with_name("results")
#: Run order matters: ingest needs a fresh consent schema; fan-out's recipients are every adult
#: registered before it, and a fan-out cut short by its cap keeps mailing until the services stop,
#: so it runs just before scaling, which stops every service and recreates consent-changed.
WORKLOADS: dict[str, Callable[[Bench], Awaitable[None]]] = {
    "consent_ingest": consent_ingest.run,
    "change_latency": change_latency.run,
    "decisions": decisions.run,
    "erasures": erasures.run,
    "fanout": fanout.run,
    "scaling": scaling.run,
}


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~1 minute for two workloads)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--keep", action="store_true", help="keep var/bench-<pid> (logs, profiles) afterwards")
    args = parser.parse_args(argv)
    args.selected = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = sorted(set(args.selected) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    return args


async def run_workloads(bench: Bench, selected: list[str]) -> None:
    for name in WORKLOADS:
        if name not in selected:
            continue
        began = time.monotonic()
        say(f"{name}: running")
        try:
            await WORKLOADS[name](bench)
            say(f"{name}: done in {time.monotonic() - began:.0f}s")
        except NotAvailable as exc:
            bench.unavailable[name] = str(exc)
            say(f"{name}: not available: {exc}")
        except Exception as exc:
            bench.unavailable[name] = f"failed: {type(exc).__name__}: {exc}"[:600]
            say(f"{name}: failed after {time.monotonic() - began:.0f}s:\n{traceback.format_exc()}")
        bench.detail("seconds", **{name: round(time.monotonic() - began, 1)})
    memory.record(bench)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while a topic or group settles
    began = time.monotonic()
    load_before = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    var_dir = default_var_dir()
    root = var_dir / f"bench-{os.getpid()}"
    stack = Stack(root, cache_dir=var_dir, durable=False, statement_stats=True, kafka_peak_jit=True,
                  cleanup=not args.keep, environ={})
    endpoints = await stack.start()
    bench = Bench(endpoints, root, var_dir, Sizes.quick() if args.quick else Sizes(), args.quick)
    if stack.postgres is not None:
        bench.admin_url = stack.postgres.admin_url
        bench.postgres_pid = stack.postgres.pid
    if stack.kafka is not None:
        bench.kafka_pid = stack.kafka.pid
    bench.rss.start()
    try:
        await run_workloads(bench, args.selected)
    finally:
        bench.stop_all()
        bench.rss.stop()
        await stack.stop()
    elapsed = time.monotonic() - began
    json_path = args.results_dir / f"{stamp}.json"
    png_path = args.results_dir / f"{stamp}.png"
    load_after = os.getloadavg()
    report.write_json(bench, json_path, timestamp=stamp, total_seconds=round(elapsed, 1), postgres_fsync=False,
                      selected=args.selected, load_average_before=load_before, load_average_after=load_after)
    report.write_plot(bench, png_path)
    print()
    print(f"bench{' --quick' if args.quick else ''}: {report.machine()['cpu_count']} cores, "
          f"Python {report.machine()['python']}, {elapsed:.0f}s; stack under {root} "
          f"(PostgreSQL fsync off, full_page_writes off; Kafka single node, page cache as always)\n"
          f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}: "
          f"(other work on the machine shares the cores with the bench and makes every figure worse)")
    print(report.table(bench))
    extra = report.notes(bench)
    if extra:
        print()
        print(extra)
    print(f"\nresults: {json_path}\nplot:    {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
