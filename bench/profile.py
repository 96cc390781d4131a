"""Where the time goes: a py-spy profile of a service when py-spy is installed, else its own metrics.

py-spy is not a project dependency; when it is on PATH (or in the venv) the bench attaches it to the
services under load (consent during ingest, change latency and decisions; all three during the
erasures) and keeps a summary of where the samples fell. Without it, the service's histograms
(privacy_event_processing_seconds, privacy_http_request_seconds) split the wall time instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.core import Bench, metric


def py_spy() -> str | None:
    """The py-spy executable, or None (also when BENCH_PY_SPY=0)."""
    if os.environ.get("BENCH_PY_SPY", "1") == "0":
        return None
    found = shutil.which("py-spy")
    local = Path(sys.executable).with_name("py-spy")
    return found or (str(local) if local.is_file() else None)


class Profiler:
    """`py-spy record` attached to a pid until `stop()`; `top()` summarises the collapsed stacks."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.pid = pid
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        exe = py_spy()
        if exe is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            self.process = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
                 "--output", str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

    @property
    def active(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def top(self, limit: int = 10) -> dict[str, Any]:
        """Shares of samples (%): by library of the running frame, and by the innermost project function
        on the stack (services/, privacy_runtime/, schemas/), i.e. which of our code the time is under."""
        if not self.output.is_file():
            return {}
        areas: Counter[str] = Counter()
        ours: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame(f) for f in stack.split(";")]
            total += count
            name, path = frames[-1]
            idle = name.endswith(".select")
            areas[IDLE if idle else _area(path)] += count
            leaves[f"{name} ({path})"] += count
            project = [f"{n} ({p})" for n, p in frames if p.startswith(PROJECT_DIRS) and n != "<module>"]
            ours[IDLE if idle else project[-1] if project else "(no project frame: faust/mode/aiokafka)"] += count
        if not total:
            return {}

        def share(counter: Counter[str]) -> list[tuple[str, float]]:
            return [(key, round(100 * c / total, 1)) for key, c in counter.most_common(limit)]

        return {"samples": total, "by library (self time)": share(areas),
                "under our function (innermost)": share(ours), "hottest frames (self time)": share(leaves)}


PROJECT_DIRS = ("services/", "privacy_runtime/", "schemas/")
IDLE = "idle (event loop waiting in select)"


def _frame(frame: str) -> tuple[str, str]:
    """`fn (path/to/module.py:12)` -> (`fn`, `path/to/module.py`)."""
    name, _, where = frame.partition(" (")
    return name, where.rsplit(":", 1)[0].rstrip(")")


def _area(path: str) -> str:
    """The library a file belongs to: its first path component (`asyncpg`, `aiokafka`, `services`...)."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if head else path


def ingest_breakdown(samples: dict[tuple[str, str], float], topic: str, wall_seconds: float) -> dict[str, Any]:
    """Split an ingest's wall time with the service's own counters (a difference of two scrapes)."""
    consumed = metric(samples, "privacy_events_consumed_total", topic=topic)
    batches = metric(samples, "privacy_event_processing_seconds_count", topic=topic)
    in_apply = metric(samples, "privacy_event_processing_seconds_sum", topic=topic)
    return {
        "wall_seconds": round(wall_seconds, 3),
        "events_consumed": consumed,
        "batches": batches,
        "mean_batch_events": round(consumed / batches, 1) if batches else None,
        "mean_batch_ms": round(1000 * in_apply / batches, 2) if batches else None,
        # Lanes (one per partition) apply side by side: the sum over transactions, and how many were
        # open on average (4 partitions: at most 4).
        "seconds_in_db_transactions": round(in_apply, 3),
        "mean_transactions_open": round(in_apply / wall_seconds, 2) if wall_seconds else None,
        "commands_issued": metric(samples, "privacy_commands_sent_total"),
        "outbox_published": metric(samples, "privacy_outbox_published_total"),
        "dead_lettered": metric(samples, "privacy_events_dead_lettered_total"),
    }


@contextlib.contextmanager
def profiled(bench: Bench, workload: str, *services: str, rate: int = 200) -> Iterator[None]:
    """py-spy on each named running service for the duration; summaries go to details[workload]["py_spy"].

    Workloads measured while profiled pass a low `rate`: sampling competes for the same two cores and
    shows up in the very figures being measured (200 Hz on three services cost the erasures about a
    quarter of their time here; 20 Hz is within noise)."""
    profilers = {}
    for name in services:
        service = bench.services.get(name)
        if service is not None and service.process is not None:
            profilers[name] = Profiler(
                service.process.pid, bench.root / "profiles" / f"{workload}-{name}.txt", rate=rate)
    try:
        yield
    finally:
        for profiler in profilers.values():
            profiler.stop()
        if any(p.active for p in profilers.values()):
            bench.detail(workload, py_spy={name: p.top() for name, p in profilers.items()})
        else:
            bench.detail(workload, py_spy="py-spy not installed")


class StatementStats:
    """Where the database time goes: pg_stat_statements on the bench's own PostgreSQL, when the server
    has it (Debian's package does). `reset()` before a workload, `top()` after it."""

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url
        self.available = False

    async def reset(self) -> None:
        if self.admin_url is None:
            return
        conn = await asyncpg.connect(self.admin_url.rsplit("/", 1)[0] + "/privacy")
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            self.available = True
        except asyncpg.PostgresError:
            self.available = False  # not preloaded: the figures stay without this breakdown
        finally:
            await conn.close()

    async def top(self, limit: int = 8) -> list[str]:
        """The statements with most execution time: share of the total, ms, calls, rows, the SQL's start."""
        if not self.available or self.admin_url is None:
            return []
        conn = await asyncpg.connect(self.admin_url.rsplit("/", 1)[0] + "/privacy")
        try:
            rows = await conn.fetch(
                "SELECT total_exec_time, calls, rows, query FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_exec_time DESC")
        finally:
            await conn.close()
        total = sum(r["total_exec_time"] for r in rows) or 1.0
        lines = [f"all statements: {total / 1000:.2f} s in {sum(r['calls'] for r in rows):,} calls"]
        for r in rows[:limit]:
            query = " ".join(r["query"].split())[:90]
            lines.append(f"{100 * r['total_exec_time'] / total:5.1f}%  {r['total_exec_time']:8.0f} ms  "
                         f"{r['calls']:6} calls  {r['rows']:8} rows  {query}")
        return lines


class CpuMeter:
    """CPU seconds spent by the service, by PostgreSQL (postmaster and every backend) and by the Kafka
    broker in a window, and how busy the whole machine was.

    On a shared 2-core machine, wall-clock rates move with whatever else runs; CPU per event does not,
    so it says where the cost is even when the figures are noisy. The machine's busy share tells a
    workload bound by CPU (near 1) from one bound by waiting (round trips, polls)."""

    def __init__(self, service_pid: int, postgres_pid: int | None, kafka_pid: int | None = None) -> None:
        self.service = psutil.Process(service_pid)
        self.postgres = psutil.Process(postgres_pid) if postgres_pid else None
        self.kafka = psutil.Process(kafka_pid) if kafka_pid else None
        self.begin = (self._service_seconds(), self._postgres_seconds(), self._kafka_seconds(), self._machine())

    @staticmethod
    def _times(proc: psutil.Process, with_children: bool = False) -> tuple[float, float]:
        """(user, kernel) CPU seconds."""
        times = proc.cpu_times()
        user, kernel = times.user, times.system
        if with_children:
            user, kernel = user + times.children_user, kernel + times.children_system
        return user, kernel

    def _kafka_seconds(self) -> tuple[float, float]:
        return self._times(self.kafka) if self.kafka is not None else (0.0, 0.0)

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, total) CPU seconds of all cores since boot."""
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        return total - idle, total

    def _service_seconds(self) -> tuple[float, float]:
        return self._times(self.service)

    def _postgres_seconds(self) -> tuple[float, float]:
        if self.postgres is None:
            return 0.0, 0.0
        user = kernel = 0.0
        for proc in [self.postgres, *self.postgres.children()]:
            try:
                # the postmaster's children times: backends that ended meanwhile, reaped by it
                u, k = self._times(proc, with_children=proc is self.postgres)
            except psutil.NoSuchProcess:
                continue
            user, kernel = user + u, kernel + k
        return user, kernel

    def seconds(self) -> dict[str, float]:
        """CPU seconds per process since the meter started, the kernel's share of each (system calls:
        socket reads and writes, mostly), and the machine's busy share."""
        now = (self._service_seconds(), self._postgres_seconds(), self._kafka_seconds())
        busy, total = self._machine()
        busy_begin, total_begin = self.begin[3]
        figures: dict[str, float] = {}
        for name, (user, kernel), (user0, kernel0) in zip(("service", "postgres", "kafka"), now, self.begin[:3],
                                                          strict=True):
            spent = (user - user0) + (kernel - kernel0)
            figures[f"{name}_cpu_seconds"] = round(spent, 3)
            figures[f"{name}_kernel_share"] = round((kernel - kernel0) / spent, 3) if spent > 0 else 0.0
        figures["machine_busy_share"] = round((busy - busy_begin) / max(1e-9, total - total_begin), 3)
        return figures
