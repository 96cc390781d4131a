"""What every workload shares: sizes, figures and targets, the services it runs, RSS sampling.

A workload is an `async def run(bench: Bench) -> None` that records `Figure`s with `bench.add(...)`
and anything worth keeping for later comparison with `bench.detail(...)`. Services are started
through `bench.start_service`, so their memory is sampled for the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import asyncpg
import httpx
import psutil

from devstack.stack import Endpoints
from tests.helpers import ServiceProcess

RSS_INTERVAL_SECONDS = 0.1
#: The RSS phase between workloads (producing their data, waiting); "rest" is the idle second after a start.
SETUP = "setup"
MB = 1024 * 1024


class NotAvailable(Exception):
    """A workload cannot run here (a service it needs does not start); the reason goes in the table."""


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; `quick()` scales them down for a ~1 minute smoke run."""

    ingest_events: int = 100_000
    ingest_subjects: int = 10_000
    ingest_registrations: int = 100
    perf_records: int = 200_000
    latency_rate: int = 1_000
    latency_seconds: float = 10.0
    echo_seconds: float = 3.0
    decision_rate: int = 1_000
    decision_seconds: float = 10.0
    decision_subjects: int = 2_000
    #: The closed loop runs in rounds, the service's window then the bare query's, and each figure is
    #: the median of its windows: on identical code single 4 s windows spread from 7 to 13.6 thousand
    #: req/s between runs, and the baseline, measured later in the run, drifted apart from it.
    closed_loop_seconds: float = 2.0
    closed_loop_rounds: int = 3
    closed_loop_concurrency: int = 32
    erasures: int = 1_000
    fanout_recipients: int = 20_000
    #: The smaller fan-out run first, to compare the notifier's memory with (flat as recipients grow).
    fanout_small_recipients: int = 2_000
    smtp_baseline_emails: int = 1_000
    scaling_events: int = 15_000
    scaling_partitions: tuple[int, ...] = (1, 2, 4)
    scaling_workers: tuple[int, ...] = (1, 2)
    #: Longest a throughput measurement may run (ingest, fan-out); a slower system is measured over less.
    cap_seconds: float = 60.0
    erasure_cap_seconds: float = 60.0
    fanout_cap_seconds: float = 60.0
    scaling_cap_seconds: float = 15.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            ingest_events=10_000, ingest_subjects=1_000, ingest_registrations=10, perf_records=20_000,
            latency_seconds=2.0, echo_seconds=1.0, decision_seconds=2.0, decision_subjects=500,
            closed_loop_seconds=0.75, closed_loop_rounds=1, erasures=100, fanout_recipients=600,
            fanout_small_recipients=200, smtp_baseline_emails=200,
            # One partition count: the smoke run checks the group of one and of two workers runs and
            # is measured; each configuration restarts the service (a third of the run with three).
            scaling_events=3_000, scaling_partitions=(2,), cap_seconds=30.0, scaling_cap_seconds=10.0,
            erasure_cap_seconds=45.0, fanout_cap_seconds=20.0,
        )


@dataclass(frozen=True)
class Target:
    """A pass mark: `ours` (or the ratio ours/baseline) must be >= or < `value`."""

    op: Literal[">=", "<"]
    value: float
    on: Literal["ours", "ratio"] = "ours"

    def text(self, unit: str) -> str:
        what = "ratio" if self.on == "ratio" else ""
        suffix = "" if self.on == "ratio" else f" {unit}"
        return f"{what} {self.op} {self.value:g}{suffix}".strip()

    def check(self, ours: float | None, ratio: float | None) -> bool | None:
        value = ratio if self.on == "ratio" else ours
        if value is None:
            return None
        return value >= self.value if self.op == ">=" else value < self.value


@dataclass
class Figure:
    """One row of the table."""

    workload: str
    label: str
    unit: str
    ours: float | None
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        return self.target.check(self.ours, self.ratio) if self.target else None

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "label": self.label, "unit": self.unit, "ours": self.ours,
            "baseline": self.baseline, "baseline_label": self.baseline_label, "ratio": self.ratio,
            "target": self.target.text(self.unit) if self.target else None, "met": self.met, "note": self.note,
        }


def percentiles(samples: Sequence[float], points: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed "p50", "p99", "p99.9", plus "max" and "count"."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    result: dict[str, float] = {"count": len(ordered), "max": ordered[-1], "mean": sum(ordered) / len(ordered)}
    for point in points:
        rank = max(1, math.ceil(point / 100 * len(ordered)))
        result[f"p{point:g}"] = ordered[rank - 1]
    return result


# --- Prometheus text -------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """`{(name, labels-text): value}` from a /metrics page (labels kept as their raw text)."""
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return samples


def metric(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include all of `labels`."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for (n, lab), v in samples.items() if n == name and all(w in lab for w in wanted))


def histogram_quantile(samples: dict[tuple[str, str], float], name: str, q: float, **labels: str) -> float | None:
    """The upper bound of the bucket holding quantile q (what Prometheus' histogram_quantile rounds to)."""
    buckets: list[tuple[float, float]] = []
    for (n, lab), value in samples.items():
        if n != f"{name}_bucket" or not all(f'{k}="{v}"' in lab for k, v in labels.items()):
            continue
        le = re.search(r'le="([^"]+)"', lab)
        if le:
            buckets.append((float(le.group(1)), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return None


Samples = dict[tuple[str, str], float]


def diff_metrics(after: Samples, before: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


# --- services and their memory ---------------------------------------------------------------


@dataclass
class BenchService(ServiceProcess):
    """tests.helpers.ServiceProcess with its log under the bench run's folder, and the production
    KAFKA_FETCH_MAX_WAIT_MS (the suite's longer idle wait would show in every latency figure)."""

    idle_fetch_wait_ms: ClassVar[str | None] = None
    log_dir: Path = Path("var/bench-logs")

    def start(self) -> BenchService:
        import subprocess
        import sys

        from tests.helpers import ROOT

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "worker", "-l", "warn"],
            cwd=ROOT, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    async def metrics(self) -> dict[tuple[str, str], float]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{self.url}/metrics")
        return parse_metrics(response.text)


class RssSampler:
    """Samples the RSS of every running service every 100 ms (a thread), peak per service and phase."""


    def __init__(self) -> None:
        self.phase = SETUP
        self.peaks: dict[str, dict[str, float]] = {}  # service name -> phase -> peak MB
        self._procs: dict[str, tuple[str, psutil.Process]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def watch(self, key: str, service: str, pid: int) -> None:
        with self._lock:
            self._procs[key] = (service, psutil.Process(pid))

    def forget(self, key: str) -> None:
        with self._lock:
            self._procs.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_SECONDS):
            with self._lock:
                procs = list(self._procs.values())
                phase = self.phase
            for service, proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                    by_phase = self.peaks.setdefault(service, {})
                    by_phase[phase] = max(by_phase.get(phase, 0.0), rss / MB)


@dataclass
class Bench:
    """The run: where the stack is, the services started, and the figures recorded so far."""

    endpoints: Endpoints
    root: Path
    cache_dir: Path
    sizes: Sizes
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Latency percentiles (ms) per series, for the table's notes, the JSON and the plot.
    latencies: dict[str, dict[str, float]] = field(default_factory=dict)
    services: dict[str, BenchService] = field(default_factory=dict)
    rss: RssSampler = field(default_factory=RssSampler)
    #: Adult subjects registered so far in this run (every one is a recipient of a fan-out).
    registered: int = 0
    #: Subjects erased so far in this run (no longer recipients).
    erased: int = 0
    #: Superuser URL of the bench's own PostgreSQL (for pg_stat_statements), when it runs one.
    admin_url: str | None = None
    #: The bench's PostgreSQL postmaster, for CPU accounting.
    postgres_pid: int | None = None
    #: The bench's Kafka broker, for CPU accounting.
    kafka_pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def detail(self, workload: str, **values: Any) -> None:
        self.details.setdefault(workload, {}).update(values)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute RSS samples taken meanwhile to `name` (then back to the phase before)."""
        previous, self.rss.phase = self.rss.phase, name
        try:
            yield
        finally:
            self.rss.phase = previous

    async def start_service(
        self, name: str, *, key: str | None = None, extra_env: dict[str, str] | None = None,
        timeout: float = 90.0,
    ) -> BenchService:
        """Start `services.<name>` (once per key), wait for /readyz, sample its memory from then on."""
        key = key or name
        if key in self.services:
            return self.services[key]
        if not (Path("services") / name / "__main__.py").is_file():
            raise NotAvailable(f"services/{name} has no __main__.py yet")
        consent = self.services.get("consent")
        env = {
            **({"CONSENT_BASE_URL": consent.url, "CONSENT_PUBLIC_URL": consent.url} if consent else {}),
            "STATE_DIR": str(self.root / "state" / key),
            "COMMAND_RESEND_BASE_SECONDS": "3600",  # no re-sends inside a measurement
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        service = BenchService(name, self.endpoints.env(), env, log_dir=self.root / "logs")
        service.start()
        assert service.process is not None
        self.rss.watch(key, name, service.process.pid)
        try:
            await service.wait_ready(timeout=timeout)
        except AssertionError as exc:
            self.stop_service(key, service)
            raise NotAvailable(f"{name} did not become ready: {_last_error(str(exc))}") from None
        self.services[key] = service
        if self.rss.phase == SETUP:
            with self.phase("rest"):
                await asyncio.sleep(1.0)  # a few idle samples: memory at rest
        return service

    def stop_service(self, key: str, service: BenchService | None = None) -> None:
        service = service or self.services.pop(key, None)
        self.rss.forget(key)
        if service is not None:
            service.stop()

    def stop_all(self) -> None:
        for key in list(self.services):
            self.stop_service(key)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.endpoints.database_url)


def _last_error(text: str, lines: int = 6) -> str:
    """The end of a service log, enough to say why it did not start."""
    interesting = [line for line in text.splitlines() if line.strip()]
    return " | ".join(interesting[-lines:])[-800:]


async def wait_for(check: Any, *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll an async `check` until truthy; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def open_loop(rate: float, seconds: float, fire: Callable[[int, float], Awaitable[None]]) -> int:
    """Call `fire(i, scheduled_at)` at a fixed rate regardless of how earlier calls fare (open loop).

    `scheduled_at` is a `time.perf_counter()` value; when the loop falls behind it catches up by
    firing every overdue call at once, so a slow system still sees the full offered load.
    """
    total = int(rate * seconds)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            await fire(sent, start + sent / rate)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    return total
